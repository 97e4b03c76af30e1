import { createHash } from 'node:crypto';
import { AcmeProblem } from '../problem';
import { AddressGuard } from './address-guard';

/**
 * dns-01 (RFC 8555 8.4): a TXT record at _acme-challenge.NAME holding the
 * base64url SHA-256 of the key authorization. A wildcard's authorization is
 * for its base name, so the record is at _acme-challenge.BASE.
 */
export async function validateDns01(guard: AddressGuard, name: string, keyAuthorization: string): Promise<void> {
  const expected = createHash('sha256').update(keyAuthorization).digest('base64url');
  const at = `_acme-challenge.${name}`;
  const records = await guard.txt(at);
  if (records.length === 0) throw new AcmeProblem('dns', `no TXT record at ${at}`);
  if (!records.includes(expected)) throw new AcmeProblem('incorrectResponse', `no TXT record at ${at} holds this challenge's digest (found ${records.length})`);
}
