// The SSRF guard (CONTRACT §3). Outbound calls never reach loopback, private, link-local,
// metadata or otherwise non-public addresses unless the allow list names the host (or host:port).
// The check runs on the *resolved* address, at registration and at every connect: the connector
// below resolves the name itself, checks every address and connects to the address it checked,
// so a DNS answer that changes between the check and the connect (rebinding) cannot slip through.
// Node's net.connect skips a custom `lookup` for IP literals, and getaddrinfo accepts inet_aton
// spellings (`2130706433`, `0x7f.1`, `127.1`), so literals are parsed and checked here, never
// handed to the resolver.
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIPv6 } from 'node:net';
import { IntegrationError } from './errors.ts';

export type Resolver = (host: string) => Promise<string[]>;

export type AddressClass =
  | 'public'
  | 'loopback'
  | 'unspecified'
  | 'private'
  | 'link-local'
  | 'carrier-grade NAT'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'unique local'
  | 'metadata';

export const defaultResolver: Resolver = async (host) => {
  const answers = await dnsLookup(host, { all: true, verbatim: true });
  return answers.map((a) => a.address);
};

// ---------------------------------------------------------------------------------------------
// Literals

/**
 * An IPv4 literal in any spelling the WHATWG URL parser and inet_aton accept: 1–4 parts, each
 * decimal, octal (leading 0) or hex (0x); the last part fills the remaining bytes. Returns the
 * 32-bit value, or undefined when `s` is not such a literal.
 */
export function parseIPv4Loose(s: string): number | undefined {
  let str = s;
  if (str.endsWith('.')) str = str.slice(0, -1);
  if (str.length === 0) return undefined;
  const parts = str.split('.');
  if (parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(p)) n = Number(p);
    else return undefined;
    if (!Number.isSafeInteger(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop()!;
  for (const n of nums) if (n > 255) return undefined;
  if (last >= 2 ** (8 * (4 - nums.length))) return undefined;
  let v = 0;
  for (const n of nums) v = v * 256 + n;
  return v * 2 ** (8 * (4 - nums.length)) + last;
}

export function formatIPv4(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

/** An IPv6 literal (brackets and zone id allowed) as 8 16-bit groups, or undefined. */
export function parseIPv6(s: string): number[] | undefined {
  let str = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  const zone = str.indexOf('%');
  if (zone >= 0) str = str.slice(0, zone);
  if (!isIPv6(str)) return undefined;
  let tail: number[] = [];
  const lastColon = str.lastIndexOf(':');
  if (str.slice(lastColon + 1).includes('.')) {
    const v4 = parseIPv4Loose(str.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail = [v4 >>> 16, v4 & 0xffff];
    str = str.slice(0, lastColon + 1);
    // `::ffff:` → `::ffff`; `::` stays (the elision is the whole head).
    if (!str.endsWith('::')) str = str.slice(0, -1);
  }
  const want = 8 - tail.length;
  const groups = (h: string) => (h === '' ? [] : h.split(':').map((g) => parseInt(g, 16)));
  const halves = str.split('::');
  let head: number[];
  if (halves.length === 2) {
    const a = groups(halves[0]!);
    const b = groups(halves[1]!);
    if (a.length + b.length > want) return undefined;
    head = [...a, ...new Array<number>(want - a.length - b.length).fill(0), ...b];
  } else {
    head = groups(str);
  }
  const out = [...head, ...tail];
  if (out.length !== 8 || out.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) {
    return undefined;
  }
  return out;
}

export function formatIPv6(g: readonly number[]): string {
  // RFC 5952: the longest run of two or more zero groups becomes `::`.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export type IpLiteral = { family: 4; v4: number } | { family: 6; groups: number[] };

/** Parses a host as an IP literal in any accepted spelling; undefined for a DNS name. */
export function parseIpLiteral(host: string): IpLiteral | undefined {
  const v6 = host.includes(':') || host.startsWith('[') ? parseIPv6(host) : undefined;
  if (v6) return { family: 6, groups: v6 };
  // A name whose last label is numeric is treated as IPv4 by the URL standard; a name that only
  // looks like a number in parts (`1.example`) is a name.
  const v4 = parseIPv4Loose(host);
  if (v4 !== undefined) return { family: 4, v4 };
  return undefined;
}

/** The canonical text of an address (dotted quad, RFC 5952 IPv6), or undefined for a name. */
export function canonicalIp(host: string): string | undefined {
  const lit = parseIpLiteral(host);
  if (!lit) return undefined;
  return lit.family === 4 ? formatIPv4(lit.v4) : formatIPv6(lit.groups);
}

// ---------------------------------------------------------------------------------------------
// Classification

const v4 = (a: number, b: number, c: number, d: number) =>
  ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;
type V4Range = [base: number, bits: number, cls: AddressClass];
const V4_RANGES: V4Range[] = [
  [v4(169, 254, 169, 254), 32, 'metadata'],
  // Azure's wire server and Alibaba's metadata service answer instance credentials too.
  [v4(168, 63, 129, 16), 32, 'metadata'],
  [v4(100, 100, 100, 200), 32, 'metadata'],
  [v4(0, 0, 0, 0), 32, 'unspecified'],
  [v4(255, 255, 255, 255), 32, 'broadcast'],
  [v4(0, 0, 0, 0), 8, 'reserved'],
  [v4(10, 0, 0, 0), 8, 'private'],
  [v4(100, 64, 0, 0), 10, 'carrier-grade NAT'],
  [v4(127, 0, 0, 0), 8, 'loopback'],
  [v4(169, 254, 0, 0), 16, 'link-local'],
  [v4(172, 16, 0, 0), 12, 'private'],
  [v4(192, 0, 0, 0), 24, 'reserved'],
  [v4(192, 0, 2, 0), 24, 'reserved'],
  [v4(192, 88, 99, 0), 24, 'reserved'],
  [v4(192, 168, 0, 0), 16, 'private'],
  [v4(198, 18, 0, 0), 15, 'reserved'],
  [v4(198, 51, 100, 0), 24, 'reserved'],
  [v4(203, 0, 113, 0), 24, 'reserved'],
  [v4(224, 0, 0, 0), 4, 'multicast'],
  [v4(240, 0, 0, 0), 4, 'reserved'],
];

function inV4(addr: number, base: number, bits: number): boolean {
  if (bits === 0) return true;
  const shift = 32 - bits;
  return addr >>> shift === base >>> shift;
}

export function classifyIPv4(addr: number): AddressClass {
  for (const [base, bits, cls] of V4_RANGES) if (inV4(addr, base, bits)) return cls;
  return 'public';
}

const embeddedV4 = (hi: number, lo: number) => ((hi << 16) >>> 0) + lo;

export function classifyIPv6(g: readonly number[]): AddressClass {
  const [a, b, c, d, e, f, h7, h8] = g as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const zeroTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroTo(8)) return 'unspecified';
  if (zeroTo(7) && h8 === 1) return 'loopback';
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible): the IPv4 address decides;
  // a compatible address with a public v4 has no legitimate use and is refused as reserved.
  if (zeroTo(5) && f === 0xffff) return classifyIPv4(embeddedV4(h7, h8));
  if (zeroTo(6)) {
    const cls = classifyIPv4(embeddedV4(h7, h8));
    return cls === 'public' ? 'reserved' : cls;
  }
  // ::ffff:0:a.b.c.d (SIIT translated) routes to the embedded v4 as well.
  if (zeroTo(4) && e === 0xffff && f === 0) return classifyIPv4(embeddedV4(h7, h8));
  // NAT64 well-known prefix 64:ff9b::/96: the translator connects to the embedded v4.
  if (a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0) {
    return classifyIPv4(embeddedV4(h7, h8));
  }
  // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215): a site's own translator.
  if (a === 0x64 && b === 0xff9b && c === 1) return 'private';
  // 6to4 2002:V4ADDR::/48: the relay delivers to the embedded v4.
  if (a === 0x2002) return classifyIPv4(embeddedV4(b, c));
  // AWS's IPv6 instance metadata endpoint, inside the ULA range below.
  if (a === 0xfd00 && b === 0xec2 && c === 0 && d === 0 && e === 0 && f === 0 && h7 === 0) {
    if (h8 === 0x254) return 'metadata';
  }
  if ((a & 0xfe00) === 0xfc00) return 'unique local';
  if ((a & 0xffc0) === 0xfe80) return 'link-local';
  // fec0::/10 site-local: deprecated, still routed inside some networks.
  if ((a & 0xffc0) === 0xfec0) return 'private';
  if ((a & 0xff00) === 0xff00) return 'multicast';
  // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking) and 2001:db8::/32
  // documentation: nothing a third-party API lives on.
  if (a === 0x2001 && b < 0x200) return 'reserved';
  if (a === 0x2001 && b === 0xdb8) return 'reserved';
  // Only 2000::/3 is global unicast; 100::/64 (discard) and the rest are unassigned.
  if ((a & 0xe000) !== 0x2000) return 'reserved';
  return 'public';
}

/** The class of an address given as text in any accepted spelling; undefined for a name. */
export function classifyAddress(host: string): AddressClass | undefined {
  const lit = parseIpLiteral(host);
  if (!lit) return undefined;
  return lit.family === 4 ? classifyIPv4(lit.v4) : classifyIPv6(lit.groups);
}

// ---------------------------------------------------------------------------------------------
// The allow list

export interface AllowEntry {
  /** Lowercase name, or the canonical text of an address. */
  host: string;
  port?: number;
}

/** Parses `host`, `host:port`, `[v6]`, `[v6]:port`; addresses in any spelling are canonicalized. */
export function parseAllowList(entries: readonly string[]): AllowEntry[] {
  const out: AllowEntry[] = [];
  for (const raw of entries) {
    const s = raw.trim().toLowerCase();
    if (!s) continue;
    let host = s;
    let port: number | undefined;
    const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
    if (bracket) {
      host = bracket[1]!;
      if (bracket[2]) port = Number(bracket[2]);
    } else if (!isIPv6(s)) {
      const m = /^(.*):(\d{1,5})$/.exec(s);
      if (m) {
        host = m[1]!;
        port = Number(m[2]);
      }
    }
    if (host.endsWith('.')) host = host.slice(0, -1);
    host = canonicalIp(host) ?? host;
    out.push(port === undefined ? { host } : { host, port });
  }
  return out;
}

export class EgressPolicy {
  readonly allow: readonly AllowEntry[];
  readonly resolver: Resolver;

  constructor(opts: { allow?: readonly string[]; resolver?: Resolver | undefined } = {}) {
    this.allow = parseAllowList(opts.allow ?? []);
    this.resolver = opts.resolver ?? defaultResolver;
  }

  /** Whether the allow list names this host (its name or the address it resolved to). */
  allowed(host: string, port: number, address?: string): boolean {
    const h = normalizeHost(host);
    const a = address === undefined ? undefined : (canonicalIp(address) ?? address);
    return this.allow.some(
      (e) => (e.host === h || (a !== undefined && e.host === a)) && (e.port ?? port) === port,
    );
  }

  /** Refusal reason for one address, or undefined when it may be reached. */
  check(host: string, port: number, address: string): string | undefined {
    const cls = classifyAddress(address);
    if (cls === undefined) return `${address} is not an IP address`;
    if (cls === 'public') return undefined;
    if (this.allowed(host, port, address)) return undefined;
    const shown = canonicalIp(address) ?? address;
    return `${shown} is ${cls}`;
  }

  /**
   * Resolves `host` (a literal is parsed, never resolved), checks every address and returns
   * the first: connecting to an unchecked sibling could reach what the check refused.
   * Throws IntegrationError `egress_refused` (or `connection` when the name does not resolve).
   */
  async resolve(host: string, port: number): Promise<string> {
    const h = normalizeHost(host);
    const literal = canonicalIp(h);
    let addresses: string[];
    if (literal !== undefined) {
      addresses = [literal];
    } else {
      try {
        addresses = await this.resolver(h);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        throw new IntegrationError(
          'connection',
          `${h} did not resolve${typeof code === 'string' ? ` (${code})` : ''}`,
        );
      }
      if (addresses.length === 0) throw new IntegrationError('connection', `${h} did not resolve`);
    }
    for (const address of addresses) {
      const why = this.check(h, port, address);
      if (why) throw new IntegrationError('egress_refused', why, { retryable: false });
    }
    return literal ?? canonicalIp(addresses[0]!) ?? addresses[0]!;
  }

  /** The registration check on a base URL: resolves and checks its host. */
  async checkUrl(url: URL): Promise<void> {
    await this.resolve(url.hostname, effectivePort(url));
  }
}

export function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return canonicalIp(h) ?? h;
}

export function effectivePort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}
