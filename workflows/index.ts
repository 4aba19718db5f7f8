// The worker's workflowsPath: every workflow type this task queue runs.
export { caseWorkflow } from './case.ts';
export { asyncBackendRule } from './async-backend.ts';
export * from './user/index.ts';
