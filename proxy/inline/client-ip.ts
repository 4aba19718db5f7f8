// The client address that rules see as $.device.ip. X-Forwarded-For is written by whoever
// sent the request, so only the hops appended by proxies we trust can be believed: walk it
// from the right, past trusted hops, and take the first address a trusted hop vouched for.
import { BlockList, isIP } from 'node:net';

export interface TrustedProxies {
  /** Whether an address (normalized) is one of the trusted proxies. */
  has(ip: string): boolean;
  readonly empty: boolean;
}

const NAMED: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

export class TrustedProxiesError extends Error {
  readonly code = 'invalid_trusted_proxies';
}

/**
 * Parses VIGIL_TRUSTED_PROXIES entries: addresses, CIDR blocks, or the names `loopback`,
 * `private`, `linklocal`. An entry that is none of these is an error, not silently ignored:
 * a typo would otherwise make every client appear to come from the load balancer.
 */
export function parseTrustedProxies(entries: readonly string[]): TrustedProxies {
  const list = new BlockList();
  let count = 0;
  const add = (entry: string) => {
    const [addr = '', bits] = entry.split('/');
    const family = isIP(addr);
    if (family === 0) throw new TrustedProxiesError(`not an IP address or CIDR: "${entry}"`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) {
      list.addAddress(addr, type);
    } else {
      const prefix = Number(bits);
      const max = family === 4 ? 32 : 128;
      if (!/^\d+$/.test(bits) || prefix > max) {
        throw new TrustedProxiesError(`bad prefix length in "${entry}"`);
      }
      list.addSubnet(addr, prefix, type);
    }
    count++;
  };
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    const named = NAMED[entry.toLowerCase()];
    if (named) named.forEach(add);
    else add(entry);
  }
  return {
    empty: count === 0,
    has(ip) {
      if (count === 0) return false;
      const family = isIP(ip);
      return family !== 0 && list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/** `::ffff:203.0.113.7` (a v4 client on a dual-stack socket) is 203.0.113.7. */
export function normalizeIp(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** One X-Forwarded-For element: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`; '' if not an IP. */
function hopAddress(hop: string): string {
  let h = hop.trim();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    h = end === -1 ? '' : h.slice(1, end);
  } else if (h.indexOf(':') !== -1 && h.indexOf(':') === h.lastIndexOf(':')) {
    h = h.slice(0, h.indexOf(':'));
  }
  return isIP(h) ? normalizeIp(h) : '';
}

/**
 * The client address: the socket peer unless the peer is trusted (or `peerTrusted`, for the
 * authz endpoint whose caller authenticated), in which case X-Forwarded-For is walked from
 * the right past trusted hops. A malformed hop stops the walk: the last hop that we could
 * believe is the best address known.
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: TrustedProxies,
  peerTrusted = false,
): string {
  let current = normalizeIp(peer ?? '');
  if (forwardedFor === undefined || (!peerTrusted && !trusted.has(current))) return current;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hopAddress(hops[i]!);
    if (!hop) return current;
    current = hop;
    if (!trusted.has(hop)) return hop;
  }
  return current;
}

/** Entries or an already parsed set (the composition root may share one between servers). */
export function toTrustedProxies(
  value: readonly string[] | TrustedProxies | undefined,
): TrustedProxies {
  if (value === undefined) return parseTrustedProxies([]);
  return isTrustedProxies(value) ? value : parseTrustedProxies(value);
}

function isTrustedProxies(v: readonly string[] | TrustedProxies): v is TrustedProxies {
  return !Array.isArray(v);
}
