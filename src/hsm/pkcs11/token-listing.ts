import * as pkcs11js from 'pkcs11js';
import { HsmHealth } from '../hsm';
import { KeyAlgorithm } from '../key-algorithm';
import { bool, findObjects, getAttrs, hex, ulong } from './attributes';
import { readKek } from './cluster-kek';
import { describe } from './errors';
import type { Failover } from './failover';
import { findPublic } from './key-objects';
import { Handle, PKCS11 } from './module-registry';
import { readPublic } from './public-key';
import type { SessionPool } from './session-pool';
import { Token, trimLabel } from './token';

/** `hsmca hsm list`: tokens, their private keys with the security attributes, the cluster wrapping key. */

/** Attributes of one private key object, as `hsmca hsm list` shows them. */
export interface Pkcs11KeyObject {
  label: string;
  /** CKA_ID, hex */
  id: string;
  /** undefined for key types hsmca does not use */
  algorithm?: KeyAlgorithm;
  keyType: 'ec' | 'rsa' | 'other';
  /** a public key object with the same CKA_ID and label exists */
  hasPublicKey: boolean;
  attributes: {
    token: boolean;
    private: boolean;
    sensitive: boolean;
    alwaysSensitive: boolean;
    extractable: boolean;
    neverExtractable: boolean;
    wrapWithTrusted: boolean;
    local: boolean;
    sign: boolean;
  };
}

export interface Pkcs11TokenInfo {
  label: string;
  status: 'ok' | 'down';
  error?: string;
  manufacturer?: string;
  model?: string;
  serialNumber?: string;
  /** private keys on the token (empty when it is down) */
  keys: Pkcs11KeyObject[];
  /** the cluster wrapping key (see docs/hsm-pkcs11-design.md); undefined when the token is down */
  clusterKek?: { present: boolean; id?: string; trusted?: boolean };
}

export interface Pkcs11HsmInfo {
  module: string;
  cluster: boolean;
  health: HsmHealth;
  tokens: Pkcs11TokenInfo[];
}

/** Each token of `health` as `hsmca hsm list` shows it; tokens that are down are listed without keys. */
export async function describeTokens(
  p11: PKCS11,
  pool: SessionPool,
  failover: Failover,
  tokens: readonly Token[],
  health: HsmHealth,
): Promise<Pkcs11TokenInfo[]> {
  const out: Pkcs11TokenInfo[] = [];
  for (const th of health.tokens) {
    const t = tokens.find((x) => x.label === th.label);
    const entry: Pkcs11TokenInfo = { label: th.label, status: th.status, error: th.error, keys: [] };
    out.push(entry);
    if (!t || th.status !== 'ok') continue;
    try {
      const ti = failover.checkTokenInfo(t);
      entry.manufacturer = trimLabel(ti.manufacturerID);
      entry.model = trimLabel(ti.model);
      entry.serialNumber = trimLabel(ti.serialNumber);
      await pool.withSession(t, (s) => {
        const kek = readKek(p11, s);
        entry.clusterKek = kek ? { present: true, id: hex(kek.id), trusted: kek.trusted } : { present: false };
        for (const priv of findObjects(p11, s, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }])) {
          entry.keys.push(describeKey(p11, s, priv));
        }
      });
      entry.keys.sort((a, b) => a.label.localeCompare(b.label));
    } catch (e) {
      entry.status = 'down';
      entry.error = describe(e);
    }
  }
  return out;
}

function describeKey(p11: PKCS11, s: Handle, priv: Handle): Pkcs11KeyObject {
  const A = pkcs11js;
  const a = getAttrs(p11, s, priv, [
    A.CKA_LABEL,
    A.CKA_ID,
    A.CKA_KEY_TYPE,
    A.CKA_TOKEN,
    A.CKA_PRIVATE,
    A.CKA_SENSITIVE,
    A.CKA_ALWAYS_SENSITIVE,
    A.CKA_EXTRACTABLE,
    A.CKA_NEVER_EXTRACTABLE,
    A.CKA_WRAP_WITH_TRUSTED,
    A.CKA_LOCAL,
    A.CKA_SIGN,
  ]);
  const label = a.get(A.CKA_LABEL)?.toString('utf8') ?? '';
  const id = a.get(A.CKA_ID) ?? Buffer.alloc(0);
  const keyType = ulong(a.get(A.CKA_KEY_TYPE)!);
  let algorithm: KeyAlgorithm | undefined;
  try {
    if (keyType === A.CKK_EC || keyType === A.CKK_RSA) algorithm = readPublic(p11, s, priv, keyType, false).algorithm;
  } catch {
    /* unreadable parameters: shown without an algorithm */
  }
  return {
    label,
    id: hex(id),
    algorithm,
    keyType: keyType === A.CKK_EC ? 'ec' : keyType === A.CKK_RSA ? 'rsa' : 'other',
    hasPublicKey: !!findPublic(p11, s, label, id),
    attributes: {
      token: bool(a.get(A.CKA_TOKEN)),
      private: bool(a.get(A.CKA_PRIVATE)),
      sensitive: bool(a.get(A.CKA_SENSITIVE)),
      alwaysSensitive: bool(a.get(A.CKA_ALWAYS_SENSITIVE)),
      extractable: bool(a.get(A.CKA_EXTRACTABLE)),
      neverExtractable: bool(a.get(A.CKA_NEVER_EXTRACTABLE)),
      wrapWithTrusted: bool(a.get(A.CKA_WRAP_WITH_TRUSTED)),
      local: bool(a.get(A.CKA_LOCAL)),
      sign: bool(a.get(A.CKA_SIGN)),
    },
  };
}
