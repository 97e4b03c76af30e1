import { PreIssuanceLint } from './lint/pre-issuance-lint';
import { Clock } from '../clock';
import { HsmError } from '../hsm/hsm';
import { Logger } from '../log';
import { CertificateStore } from '../storage/certificate-store';
import { CrlNumberTaken, CrlRecord, CrlStore } from '../storage/crl-store';
import { ext } from './certificate';
import { buildCrl } from './crl-encoder';
import { ServedCrl, entries, served } from './crl-service';
import { CaIdentity } from './hierarchy';
import { hsmFailure } from './issuance';

/*
 * Partitioned CRLs (HSMCA_CRL_SHARDS > 1).
 *
 * Each new certificate is given one of N shards at issuance, stored with it
 * (certificates.crl_shard), and its cRLDistributionPoints names that shard's
 * CRL, `${publicUrl}/crl/${shard}`, instead of the full CRL. Each shard CRL is
 * a CRL scope of its own (RFC 5280 5.2.5): a critical issuingDistributionPoint
 * whose distributionPoint is, byte for byte, the DistributionPointName in its
 * certificates' cRLDistributionPoints (RFC 5280 6.3.3 (b)(2)(i); OpenSSL
 * compares the two names as DER), onlyContainsUserCerts (only end-entity
 * certificates are revoked here), its own CRL number sequence (RFC 5280
 * 5.2.3) and only its own certificates' entries. The full CRL at /crl keeps
 * listing every revocation, and certificates issued without shards (stored
 * shard NULL) keep naming it.
 *
 * A shard is rebuilt alone when one of its certificates is revoked, so a
 * relying party re-downloads 1/N of the revocations; all shards are rebuilt
 * by the periodic refresh, since they expire like the full CRL.
 */

/** Which shard a certificate belongs to, and the URLs and extensions that name the shards. */
export class CrlShardPlan {
  private readonly shardUrls: string[];
  private readonly cdps: Buffer[];

  /** `count` shards (2..1024) under `crlUrl` (the full CRL's URL, `${publicUrl}/crl`). */
  constructor(
    readonly count: number,
    crlUrl: string,
  ) {
    if (!Number.isInteger(count) || count < 2) throw new RangeError('a shard plan needs at least two shards');
    this.shardUrls = Array.from({ length: count }, (_, k) => `${crlUrl}/${k}`);
    this.cdps = this.shardUrls.map((u) => ext.crlDistributionPoints(u));
  }

  /**
   * The shard of a serial: its first four octets (leading zero octets
   * skipped, as in its INTEGER encoding) as an unsigned number, modulo the
   * shard count. Deterministic, so the stored shard can always be checked
   * against the serial; uniform, since serials are random after their first
   * two bits (certificate.ts randomSerial).
   */
  shardOf(serial: Buffer): number {
    let i = 0;
    while (i < serial.length - 1 && serial[i] === 0) i++;
    let v = 0;
    for (let j = i; j < Math.min(i + 4, serial.length); j++) v = v * 256 + serial[j];
    return v % this.count;
  }

  /** The shard CRL's URL: the cRLDistributionPoints of its certificates and its own issuingDistributionPoint. */
  url(shard: number): string {
    return this.shardUrls[shard];
  }

  /** Every shard's URL, in shard order (the CCADB "JSON Array of Partitioned CRLs"). */
  urls(): string[] {
    return [...this.shardUrls];
  }

  /** The cRLDistributionPoints extension of a certificate in `shard` (encoded once per shard). */
  cdpExtension(shard: number): Buffer {
    return this.cdps[shard];
  }

  /** The shard a path segment names, or undefined: a decimal number below the count, without leading zeros. */
  parse(segment: string): number | undefined {
    if (!/^(0|[1-9][0-9]{0,3})$/.test(segment)) return undefined;
    const k = Number(segment);
    return k < this.count ? k : undefined;
  }
}

/** A shard CRL as served: the same shape as the full CRL's. */
export type ServedShardCrl = ServedCrl;

export interface CrlShardSettings {
  /** nextUpdate = thisUpdate + this (as the full CRL) */
  validitySeconds: number;
  /** revoked certificates stay listed this long after they expire (as the full CRL) */
  retentionSeconds: number;
}

const MAX_NUMBER_ATTEMPTS = 5;
/** a CRL made before a revocation, less this margin (commits in flight, clock steps), may lack it */
const BEHIND_MARGIN_MS = 5_000;
/** stored CRLs kept per shard */
const KEEP_PER_SHARD = 3;

/**
 * Builds, stores and serves the shard CRLs. Runs are serialised by the caller
 * (CrlService.refresh), one shard at a time, so building N shards needs the
 * memory of the largest, not of all of them.
 */
export class CrlShards {
  private readonly served = new Map<number, ServedShardCrl>();
  private readonly dirty = new Set<number>();

  constructor(
    private readonly deps: {
      plan: CrlShardPlan;
      issuer: CaIdentity;
      certificates: CertificateStore;
      crls: CrlStore;
      clock: Clock;
      log: Logger;
      settings: CrlShardSettings;
      onGenerated?: (kind: 'shard', r: CrlRecord) => void;
      /** the pre-issuance lint gate, as for the full CRL (strict, log only, when absent) */
      lint?: PreIssuanceLint;
    },
  ) {
    this.lint = deps.lint ?? new PreIssuanceLint({ log: deps.log });
  }

  private readonly lint: PreIssuanceLint;

  get plan(): CrlShardPlan {
    return this.deps.plan;
  }

  /** The newest CRL of a shard, or undefined before the first one is made. */
  current(shard: number): ServedShardCrl | undefined {
    return this.served.get(shard);
  }

  /** A certificate of this shard was revoked: the next run rebuilds it. */
  markDirty(shard: number): void {
    if (Number.isInteger(shard) && shard >= 0 && shard < this.deps.plan.count) this.dirty.add(shard);
  }

  /** Picks up shard CRLs another process made (several workers share one database). */
  async reload(): Promise<void> {
    const numbers = await this.deps.crls.latestShardNumbers();
    for (const [shard, n] of numbers) {
      if (shard >= this.deps.plan.count) continue;
      const mine = this.served.get(shard);
      if (mine && mine.record.crlNumber >= n) continue;
      const rec = await this.deps.crls.latestShard(shard);
      if (rec) this.served.set(shard, served(rec));
    }
  }

  /**
   * At start: loads the stored shard CRLs and rebuilds each one that is
   * missing, expired, or older than a revocation of its own certificates
   * (contract section 5: a crash between a revocation and its CRL loses
   * nothing).
   */
  async catchUp(): Promise<void> {
    await this.reload();
    const now = this.deps.clock.now().getTime();
    for (let shard = 0; shard < this.deps.plan.count; shard++) {
      const c = this.served.get(shard)?.record;
      if (!c || c.nextUpdate.getTime() <= now || (await this.deps.certificates.anyRevokedSince(c.thisUpdate.getTime() - BEHIND_MARGIN_MS, shard))) {
        this.dirty.add(shard);
      }
    }
    await this.rebuild(false);
  }

  /**
   * Rebuilds the shards revoked into since their last CRL (`all` false: after
   * a revocation), or every shard (`all` true: the periodic refresh, as shard
   * CRLs expire too). A shard that fails stays due for the next run.
   */
  async rebuild(all: boolean): Promise<number[]> {
    const due = all ? Array.from({ length: this.deps.plan.count }, (_, k) => k) : [...this.dirty].sort((a, b) => a - b);
    if (due.length === 0) return [];
    const t0 = Date.now();
    for (const shard of due) this.dirty.delete(shard);
    for (let i = 0; i < due.length; i++) {
      try {
        await this.build(due[i]);
      } catch (e) {
        for (const shard of due.slice(i)) this.dirty.add(shard);
        throw e;
      }
    }
    this.deps.log.info('CRL shards generated', { shards: due.length === this.deps.plan.count ? 'all' : due.join(','), ms: Date.now() - t0 });
    return due;
  }

  /** Builds, signs and stores one shard CRL with the next number of its own sequence. */
  async build(shard: number): Promise<CrlRecord> {
    const { issuer, certificates, crls, clock, settings, plan } = this.deps;
    for (let attempt = 1; ; attempt++) {
      const thisUpdate = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
      const nextUpdate = new Date(thisUpdate.getTime() + settings.validitySeconds * 1000);
      const expiredAfter = thisUpdate.getTime() - settings.retentionSeconds * 1000;
      const crlNumber = await crls.nextNumber(shard);
      const count = await certificates.countRevoked({ expiredAfter, shard });
      let der: Buffer;
      try {
        der = await buildCrl(
          {
            issuerName: issuer.name,
            authorityKeyId: issuer.keyId,
            crlNumber,
            thisUpdate,
            nextUpdate,
            // nothing is signed that fails a lint (lint/pre-issuance-lint.ts); numbers grow within the shard's sequence
            signer: this.lint.crlSigner(issuer.signer, { issuerKeyId: issuer.keyId, previousNumber: this.served.get(shard)?.record.crlNumber, crlNumber }),
            issuingDistributionPoint: plan.url(shard),
            onlyContainsUserCerts: true,
          },
          entries(certificates.revokedPages({ expiredAfter, shard })),
          count,
        );
      } catch (e) {
        throw e instanceof HsmError ? hsmFailure(e) : e;
      }
      const rec: CrlRecord = { kind: 'shard', shard, crlNumber, baseNumber: null, thisUpdate, nextUpdate, entries: count, der };
      try {
        await crls.add(rec);
      } catch (e) {
        // another process numbered this shard's CRL first: build again on top of it
        if (e instanceof CrlNumberTaken && attempt < MAX_NUMBER_ATTEMPTS) continue;
        throw e;
      }
      this.served.set(shard, served(rec));
      this.deps.onGenerated?.('shard', rec);
      await crls.pruneShard(shard, KEEP_PER_SHARD).catch(() => undefined);
      return rec;
    }
  }
}
