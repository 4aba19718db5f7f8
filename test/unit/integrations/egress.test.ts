import { describe, expect, it } from 'vitest';
import {
  canonicalIp,
  classifyAddress,
  EgressPolicy,
  parseAllowList,
} from '../../../integrations/egress.ts';

describe('egress: address classification', () => {
  it.each([
    // IPv4
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'reserved'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', 'public'],
    ['192.168.1.1', 'private'],
    ['169.254.1.1', 'link-local'],
    ['169.254.169.254', 'metadata'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['100.127.255.255', 'carrier-grade NAT'],
    ['100.128.0.1', 'public'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.0.8', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['198.19.255.255', 'reserved'],
    ['198.51.100.7', 'reserved'],
    ['203.0.113.7', 'reserved'],
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    // IPv6
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    ['fc00::1', 'unique local'],
    ['fd12:3456::1', 'unique local'],
    ['fd00:ec2::254', 'metadata'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'reserved'],
    ['100::1', 'reserved'],
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001::1', 'public'],
    // IPv4 inside IPv6: the embedded address decides
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['[::ffff:7f00:1]', 'loopback'],
    ['::ffff:a00:1', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::ffff:8.8.8.8', 'public'],
    ['0:0:0:0:0:ffff:7f00:1', 'loopback'],
    ['::127.0.0.1', 'loopback'],
    ['::8.8.8.8', 'reserved'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['64:ff9b::808:808', 'public'],
    ['64:ff9b:1::1', 'private'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:a9fe:a9fe::', 'metadata'],
    ['2002:808:808::1', 'public'],
  ])('%s is %s', (addr, cls) => {
    expect(classifyAddress(addr)).toBe(cls);
  });

  it.each([
    ['2130706433', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0177.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['167772161', '10.0.0.1'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['[::ffff:7f00:1]', '::ffff:7f00:1'],
    ['[::ffff:127.0.0.1]', '::ffff:7f00:1'],
  ])('the literal %s is %s, raw and through the URL parser', (spelling, canonical) => {
    expect(canonicalIp(spelling)).toBe(canonical);
    const viaUrl = new URL(`http://${spelling}:8080/`).hostname;
    expect(canonicalIp(viaUrl)).toBe(canonical);
    expect(classifyAddress(viaUrl)).not.toBe('public');
  });

  it('names are not literals, and malformed numbers are not addresses', () => {
    expect(canonicalIp('risk.acme.example')).toBeUndefined();
    expect(canonicalIp('1.example')).toBeUndefined();
    expect(canonicalIp('256.1.1.1')).toBeUndefined();
    expect(canonicalIp('4294967296')).toBeUndefined();
    expect(canonicalIp('08.1.1.1')).toBeUndefined();
  });
});

describe('egress: policy', () => {
  const resolverOf =
    (map: Record<string, string[]>) =>
    (host: string): Promise<string[]> => {
      const a = map[host];
      if (!a) return Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }));
      return Promise.resolve(a);
    };

  it('parses allow entries, canonicalizing addresses', () => {
    expect(
      parseAllowList(['Risk.Example:8443', '127.1:9000', '[::1]:80', 'localhost', '::1', '']),
    ).toEqual([
      { host: 'risk.example', port: 8443 },
      { host: '127.0.0.1', port: 9000 },
      { host: '::1', port: 80 },
      { host: 'localhost' },
      { host: '::1' },
    ]);
  });

  it('refuses a name resolving to a private address, with the reason', async () => {
    const p = new EgressPolicy({ resolver: resolverOf({ 'evil.example': ['10.0.0.1'] }) });
    await expect(p.resolve('evil.example', 443)).rejects.toMatchObject({
      code: 'egress_refused',
      message: 'egress_refused: 10.0.0.1 is private',
      retryable: false,
    });
  });

  it('checks every address of a name, not only the first', async () => {
    const p = new EgressPolicy({
      resolver: resolverOf({ 'mixed.example': ['93.184.216.34', '169.254.169.254'] }),
    });
    await expect(p.resolve('mixed.example', 443)).rejects.toMatchObject({
      message: 'egress_refused: 169.254.169.254 is metadata',
    });
  });

  it('answers the checked address for a public name; a literal is never resolved', async () => {
    let asked = 0;
    const p = new EgressPolicy({
      resolver: (h) => {
        asked++;
        return Promise.resolve(h === 'ok.example' ? ['93.184.216.34'] : []);
      },
    });
    expect(await p.resolve('ok.example', 443)).toBe('93.184.216.34');
    await expect(p.resolve('2130706433', 80)).rejects.toMatchObject({
      message: 'egress_refused: 127.0.0.1 is loopback',
    });
    expect(asked).toBe(1);
  });

  it('allows exactly host or host:port from the allow list', async () => {
    const p = new EgressPolicy({
      allow: ['127.0.0.1:9000', 'internal.example', 'db.example:5432'],
      resolver: resolverOf({ 'internal.example': ['10.1.2.3'], 'db.example': ['10.9.9.9'] }),
    });
    expect(await p.resolve('127.0.0.1', 9000)).toBe('127.0.0.1');
    // Any spelling of the same address is the same address.
    expect(await p.resolve('2130706433', 9000)).toBe('127.0.0.1');
    await expect(p.resolve('127.0.0.1', 9001)).rejects.toMatchObject({ code: 'egress_refused' });
    await expect(p.resolve('127.0.0.2', 9000)).rejects.toMatchObject({ code: 'egress_refused' });
    expect(await p.resolve('internal.example', 1234)).toBe('10.1.2.3');
    expect(await p.resolve('db.example', 5432)).toBe('10.9.9.9');
    await expect(p.resolve('db.example', 5433)).rejects.toMatchObject({
      message: 'egress_refused: 10.9.9.9 is private',
    });
    // Not a suffix match.
    await expect(p.resolve('x.internal.example', 80)).rejects.toMatchObject({ code: 'connection' });
  });

  it('a name that does not resolve is a connection error', async () => {
    const p = new EgressPolicy({ resolver: resolverOf({}) });
    await expect(p.resolve('nowhere.example', 80)).rejects.toMatchObject({
      code: 'connection',
      message: 'connection: nowhere.example did not resolve (ENOTFOUND)',
    });
  });
});
