// The user workflows a playbook step may name (`{ "workflow": "<export name>" }`). Add yours
// here: the case workflow starts only names exported from this file, so a typo in a playbook
// becomes a failed step instead of a child that no worker can run. Names must not clash with
// caseWorkflow or asyncBackendRule.
export { holdHighValue } from './hold-high-value.ts';
