// The engine behind a deadline. Whatever decide does (throws, rejects, hangs, returns
// garbage), the proxy gets an answer it can act on in bounded time: a decision, or a reason
// to fail open.
import { deadline } from '../../decisions/deadline.ts';
import type { DecideFn, ProxyDecision } from './types.ts';

export type DecideResult = ProxyDecision | 'error' | 'timeout';

const OUTCOMES = new Set(['ALLOW', 'REVIEW', 'BLOCK', 'PROVISIONAL']);
/** The id goes into a header: printable ASCII only. */
const HEADER_SAFE = /^[\x21-\x7e]{1,200}$/;

export function decideWithin(
  decide: DecideFn,
  input: Parameters<DecideFn>[0],
  ms: number,
): Promise<DecideResult> {
  return new Promise((resolve) => {
    const timer = deadline(ms, () => resolve('timeout'));
    const settle = (r: DecideResult) => {
      timer.cancel();
      resolve(r);
    };
    let p: Promise<ProxyDecision>;
    try {
      p = decide(input);
    } catch {
      settle('error');
      return;
    }
    Promise.resolve(p).then(
      (d) =>
        settle(
          d && OUTCOMES.has(d.decision) && typeof d.id === 'string' && HEADER_SAFE.test(d.id)
            ? d
            : 'error',
        ),
      () => settle('error'),
    );
  });
}
