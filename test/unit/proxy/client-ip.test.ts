import { describe, expect, it } from 'vitest';
import {
  TrustedProxiesError,
  clientAddress,
  normalizeIp,
  parseTrustedProxies,
} from '../../../proxy/inline/client-ip.ts';

describe('trusted proxies', () => {
  const trusted = parseTrustedProxies(['10.0.0.0/8', '192.0.2.1', 'loopback', '2001:db8::/32']);

  it('matches addresses, blocks and named sets', () => {
    expect(trusted.has('10.1.2.3')).toBe(true);
    expect(trusted.has('192.0.2.1')).toBe(true);
    expect(trusted.has('192.0.2.2')).toBe(false);
    expect(trusted.has('127.0.0.1')).toBe(true);
    expect(trusted.has('::1')).toBe(true);
    expect(trusted.has('2001:db8::7')).toBe(true);
    expect(trusted.has('not-an-ip')).toBe(false);
  });

  it('refuses entries that are not addresses', () => {
    expect(() => parseTrustedProxies(['10.0.0.0/33'])).toThrow(TrustedProxiesError);
    expect(() => parseTrustedProxies(['lb.internal'])).toThrow(/not an IP address/);
  });

  it('trusts nobody by default', () => {
    const none = parseTrustedProxies([]);
    expect(none.empty).toBe(true);
    expect(clientAddress('10.0.0.1', '203.0.113.9', none)).toBe('10.0.0.1');
  });
});

describe('client address', () => {
  const trusted = parseTrustedProxies(['10.0.0.0/8']);

  it('is the peer when the peer is not trusted, whatever X-Forwarded-For says', () => {
    expect(clientAddress('198.51.100.4', '203.0.113.9', trusted)).toBe('198.51.100.4');
  });

  it('is the right-most untrusted hop behind trusted proxies', () => {
    expect(clientAddress('10.0.0.1', '1.1.1.1, 203.0.113.9, 10.0.0.7', trusted)).toBe(
      '203.0.113.9',
    );
    expect(clientAddress('10.0.0.1', ['1.1.1.1', '203.0.113.9'], trusted)).toBe('203.0.113.9');
  });

  it('stops at a malformed hop and keeps the last believable one', () => {
    expect(clientAddress('10.0.0.1', '203.0.113.9, garbage', trusted)).toBe('10.0.0.1');
    expect(clientAddress('10.0.0.1', '203.0.113.9, garbage, 10.0.0.9', trusted)).toBe('10.0.0.9');
  });

  it('reads ports and brackets, and v4-mapped peers', () => {
    expect(clientAddress('::ffff:10.0.0.1', '203.0.113.9:4711', trusted)).toBe('203.0.113.9');
    expect(clientAddress('10.0.0.1', '[2001:db8::1]:443', trusted)).toBe('2001:db8::1');
    expect(normalizeIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
  });

  it('believes an authenticated caller (authz) even when it is not listed', () => {
    expect(clientAddress('127.0.0.1', '203.0.113.9', trusted, true)).toBe('203.0.113.9');
    expect(clientAddress('127.0.0.1', undefined, trusted, true)).toBe('127.0.0.1');
  });

  it('gives the left-most hop when every hop is trusted', () => {
    expect(clientAddress('10.0.0.1', '10.0.0.3, 10.0.0.2', trusted)).toBe('10.0.0.3');
  });
});
