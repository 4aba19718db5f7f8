// The integrations object is wired by the composition root into ports declared elsewhere
// (activities, lifecycle events, admin routes, the engine, the store). Those rooms may not import
// each other, so the types are declared twice; this file makes tsc hold them together.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../../activities/deps.ts';
import type { LifecycleDeps } from '../../../decisions/lifecycle.ts';
import type { DecideDeps } from '../../../decisions/decide.ts';
import {
  createIntegrations,
  type Integrations,
  type IntegrationStorePort,
} from '../../../integrations/index.ts';
import type { IntegrationsPort } from '../../../proxy/routes/integrations.ts';
import type { Store } from '../../../storage/store.ts';

export function wire(store: Store, i: Integrations) {
  const port: IntegrationStorePort = store;
  const activities: Pick<ActivityDeps, 'invokeAction' | 'callBackend'> = i;
  const notify: NonNullable<LifecycleDeps['notifyBackends']> = i.notify;
  const routes: IntegrationsPort = i;
  const backends: NonNullable<DecideDeps['backends']> = i.backends;
  return { port, activities, notify, routes, backends };
}

describe('integrations ports', () => {
  it('createIntegrations answers every port (an empty store)', async () => {
    const empty: IntegrationStorePort = {
      putIntegration: () => Promise.resolve({}),
      getIntegration: () => Promise.resolve(undefined),
      listIntegrations: () => Promise.resolve([]),
      deleteIntegration: () => Promise.resolve(false),
    };
    const i = createIntegrations({ store: empty, secretKey: randomBytes(32) });
    expect(await i.list()).toEqual([]);
    expect(await i.get('x')).toBeUndefined();
    expect(
      await i.notify(
        { response: { id: 'dec_1' } },
        {
          type: 'chargeback',
          decision_id: 'dec_1',
          occurred_at: '2026-01-01T00:00:00Z',
          data: {},
        },
      ),
    ).toEqual([]);
    await i.close();
  });
});
