import { describe, expect, it } from 'vitest';
import { KINDS, kindNames } from '../../../../integrations/kinds/index.ts';

describe('KINDS', () => {
  it('registers the six CONTRACT §3 kinds under their own names', () => {
    expect([...kindNames].sort()).toEqual([
      'http',
      'jira',
      'pagerduty',
      'servicenow',
      'slack',
      'webhook',
    ]);
    for (const name of kindNames) {
      expect(KINDS[name].name).toBe(name);
      expect(typeof KINDS[name].build).toBe('function');
      expect(typeof KINDS[name].testCall).toBe('function');
    }
    expect(typeof KINDS.jira.lookup).toBe('function');
    expect(typeof KINDS.servicenow.lookup).toBe('function');
  });
});
