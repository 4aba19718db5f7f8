// The decision request (CONTRACT §1): the whole body is the decision context. Known sections
// are validated strictly enough to name the offending field; other top-level sections pass
// through (rules may address them) within size bounds.
import { z } from 'zod';

const LIMITS = { string: 2_048, items: 500, metadataKeys: 64, metadataValue: 512 } as const;

const str = z.string().max(LIMITS.string);
const contextName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'lowercase letters, digits, - and _ (at most 64)');

const Transaction = z
  .object({
    reference: str.optional(),
    amount: z
      .number()
      .int('money is an integer in minor units')
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional(),
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/, 'an ISO-4217 code such as EUR')
      .optional(),
  })
  .catchall(z.unknown());

const Credential = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('masked_pan'),
    bin: z.string().regex(/^\d{6,8}$/, '6 to 8 digits'),
    last4: z.string().regex(/^\d{4}$/, '4 digits'),
    expiry: z
      .string()
      .regex(/^(0[1-9]|1[0-2])\/\d{2}$/, 'MM/YY')
      .optional(),
  }),
  z.object({
    type: z.literal('pan'),
    number: z.string().regex(/^\d{12,19}$/, '12 to 19 digits'),
    expiry: z
      .string()
      .regex(/^(0[1-9]|1[0-2])\/\d{2}$/, 'MM/YY')
      .optional(),
  }),
  z.object({ type: z.literal('token'), value: z.string().min(1).max(256) }),
]);

const Device = z
  .object({
    ip: z.union([z.ipv4(), z.ipv6()]).optional(),
    fingerprint: str.optional(),
    user_agent: str.optional(),
    session: z.string().min(1).max(256).optional(),
  })
  .catchall(z.unknown());

const Customer = z.object({ id: str.optional(), email: str.optional() }).catchall(z.unknown());

export const DecisionRequest = z
  .object({
    context: contextName.default('default'),
    transaction: Transaction.optional(),
    credential: Credential.optional(),
    credential_fingerprint: z
      .string()
      .regex(/^[A-Za-z0-9_:.-]{1,128}$/, 'a token of at most 128 url-safe characters')
      .optional(),
    customer: Customer.optional(),
    device: Device.optional(),
    billing: z.record(z.string(), z.unknown()).optional(),
    shipping: z.record(z.string(), z.unknown()).optional(),
    items: z.array(z.record(z.string(), z.unknown())).max(LIMITS.items).optional(),
    metadata: z
      .record(z.string().max(64), z.string().max(LIMITS.metadataValue))
      .refine(
        (m) => Object.keys(m).length <= LIMITS.metadataKeys,
        `at most ${LIMITS.metadataKeys} keys`,
      )
      .optional(),
    // Set by Vigil, never by the caller.
    backends: z.never().optional(),
  })
  .catchall(z.unknown())
  .refine((r) => !(r.credential && r.credential_fingerprint), {
    message: 'send either credential or credential_fingerprint, not both',
    path: ['credential_fingerprint'],
  });
export type DecisionRequest = z.infer<typeof DecisionRequest>;

/** zod issues → `{path: 'credential.bin', message}` with `[i]` for array indexes. */
export function issuesOf(err: z.ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => ({
    path: i.path.reduce<string>(
      (acc, seg) =>
        typeof seg === 'number' ? `${acc}[${seg}]` : acc ? `${acc}.${String(seg)}` : String(seg),
      '',
    ),
    message: i.message,
  }));
}
