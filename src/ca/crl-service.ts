import { createHash } from 'node:crypto';
import { Clock } from '../clock';
import { HsmError } from '../hsm/hsm';
import { Logger } from '../log';
import { CertificateStore, RevokedRow } from '../storage/certificate-store';
import { CrlNumberTaken, CrlRecord, CrlStore } from '../storage/crl-store';
import { buildCrl, RevokedEntry } from './crl-encoder';
import type { CrlShards } from './crl-shards';
import { CaIdentity } from './hierarchy';
import { hsmFailure } from './issuance';
import { PreIssuanceLint } from './lint/pre-issuance-lint';

export interface CrlSettings {
  /** nextUpdate = thisUpdate + this */
  validitySeconds: number;
  /** revoked certificates stay listed this long after they expire */
  retentionSeconds: number;
  /** the full CRL's URL (issuingDistributionPoint) and the delta CRL's (freshestCRL) */
  crlUrl: string | string[];
  deltaCrlUrl: string;
}

/** A CRL as served: DER plus the validators HTTP caches use. */
export interface ServedCrl {
  record: CrlRecord;
  etag: string;
}

const MAX_NUMBER_ATTEMPTS = 5;
/** a delta lists revocations since its base was made, with this margin for clock steps */
const DELTA_MARGIN_MS = 5_000;

/**
 * Builds, stores and serves the issuing CA's CRLs (RFC 5280 section 5): a full
 * CRL with freshestCRL, and a delta CRL against the newest full one. CRLs are
 * built in the background and served from the stored copy, never built on the
 * request path.
 */
export class CrlService {
  private full?: ServedCrl;
  private delta?: ServedCrl;
  private running?: Promise<CrlRecord>;
  private again = false;
  private allShardsDue = false;

  constructor(
    private readonly deps: {
      issuer: CaIdentity;
      /** the issuing CA's id (migration 013): its CRLs list only its own certificates; absent: every certificate */
      issuerId?: number;
      certificates: CertificateStore;
      crls: CrlStore;
      clock: Clock;
      log: Logger;
      settings: CrlSettings;
      onGenerated?: (kind: 'full' | 'delta', r: CrlRecord) => void;
      /** the pre-issuance lint gate (strict, log only, when absent) */
      lint?: PreIssuanceLint;
      /** partitioned CRLs (HSMCA_CRL_SHARDS > 1), built after the full CRL in the same run */
      shards?: CrlShards;
    },
  ) {}

  /** The shard CRLs, when the CRL is partitioned. */
  get shards(): CrlShards | undefined {
    return this.deps.shards;
  }

  /**
   * Loads the stored CRLs; builds them when there are none, when the stored
   * ones are stale, or when a revocation may be missing from them (contract
   * section 5: a CRL served after a restart lists every revocation
   * acknowledged before the stop, even after a crash or SIGKILL that left no
   * time to build one).
   */
  async init(): Promise<void> {
    await this.reload();
    if (!this.full || !this.delta || this.full.record.nextUpdate <= this.deps.clock.now() || (await this.behind())) await this.refresh();
    await this.deps.shards?.catchUp();
  }

  /**
   * Whether a revocation may be missing from the served full CRL: one revoked
   * at or after its thisUpdate (which is rounded down to the second and taken
   * before the CRL's entries are read), less a margin for commits still in
   * flight then and for clock steps. A false alarm costs one extra CRL.
   */
  private async behind(): Promise<boolean> {
    if (!this.full) return true;
    const since = this.full.record.thisUpdate.getTime() - DELTA_MARGIN_MS;
    return this.deps.certificates.anyRevokedSince(since, undefined, this.deps.issuerId);
  }

  /** Picks up CRLs another process generated (several workers share one database). */
  async reload(): Promise<void> {
    const full = await this.deps.crls.latest('full');
    if (full && (!this.full || full.crlNumber > this.full.record.crlNumber)) this.full = served(full);
    const delta = await this.deps.crls.latest('delta');
    if (delta && (!this.delta || delta.crlNumber > this.delta.record.crlNumber)) this.delta = served(delta);
    await this.deps.shards?.reload();
  }

  current(kind: 'full' | 'delta'): ServedCrl | undefined {
    return kind === 'full' ? this.full : this.delta;
  }

  /**
   * Generates a new full CRL and a delta against it, then the shard CRLs
   * revoked into (or, with `allShards`, every shard). Concurrent callers share
   * one run; a call during a run schedules exactly one more, so a revocation
   * made while a CRL is being built is never missed.
   */
  refresh(opts: { allShards?: boolean } = {}): Promise<CrlRecord> {
    if (opts.allShards) this.allShardsDue = true;
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = async (): Promise<CrlRecord> => {
      try {
        let rec: CrlRecord;
        do {
          this.again = false;
          const allShards = this.allShardsDue;
          this.allShardsDue = false;
          rec = await this.generate();
          await this.deps.shards?.rebuild(allShards).catch((e) => {
            if (allShards) this.allShardsDue = true;
            throw e;
          });
        } while (this.again);
        return rec;
      } finally {
        this.running = undefined;
      }
    };
    this.running = run();
    return this.running;
  }

  private async generate(): Promise<CrlRecord> {
    const { issuer, certificates, crls, clock, settings, log } = this.deps;
    for (let attempt = 1; ; attempt++) {
      const now = clock.now();
      const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
      const nextUpdate = new Date(thisUpdate.getTime() + settings.validitySeconds * 1000);
      const expiredAfter = thisUpdate.getTime() - settings.retentionSeconds * 1000;
      const issuerScope = this.deps.issuerId;
      const fullNumber = await crls.nextNumber();
      const lint = this.deps.lint ?? new PreIssuanceLint({ log });
      const published = [this.full?.record.crlNumber, this.delta?.record.crlNumber].reduce<bigint | undefined>((m, n) => (n !== undefined && (m === undefined || n > m) ? n : m), undefined);
      const common = {
        issuerName: issuer.name,
        authorityKeyId: issuer.keyId,
        thisUpdate,
        nextUpdate,
        signer: issuer.signer,
        issuingDistributionPoint: settings.crlUrl,
      };
      try {
        const t0 = Date.now();
        const fullCount = await certificates.countRevoked({ expiredAfter, issuer: issuerScope });
        const fullDer = await this.sign(() =>
          buildCrl({ ...common, signer: lint.crlSigner(issuer.signer, { issuerKeyId: issuer.keyId, previousNumber: published, crlNumber: fullNumber }), crlNumber: fullNumber, freshestCrl: settings.deltaCrlUrl }, entries(certificates.revokedPages({ expiredAfter, issuer: issuerScope })), fullCount),
        );
        const full: CrlRecord = { kind: 'full', crlNumber: fullNumber, baseNumber: null, thisUpdate, nextUpdate, entries: fullCount, der: fullDer };
        await crls.add(full);
        // The delta names this full CRL as its base and lists what was revoked since it.
        const revokedSince = thisUpdate.getTime() - DELTA_MARGIN_MS;
        const deltaCount = await certificates.countRevoked({ expiredAfter, revokedSince, issuer: issuerScope });
        const deltaDer = await this.sign(() =>
          buildCrl({ ...common, signer: lint.crlSigner(issuer.signer, { issuerKeyId: issuer.keyId, previousNumber: fullNumber, crlNumber: fullNumber + 1n }), crlNumber: fullNumber + 1n, deltaBaseCrlNumber: fullNumber }, entries(certificates.revokedPages({ expiredAfter, revokedSince, issuer: issuerScope })), deltaCount),
        );
        const delta: CrlRecord = { kind: 'delta', crlNumber: fullNumber + 1n, baseNumber: fullNumber, thisUpdate, nextUpdate, entries: deltaCount, der: deltaDer };
        await crls.add(delta);
        this.full = served(full);
        this.delta = served(delta);
        this.deps.onGenerated?.('full', full);
        this.deps.onGenerated?.('delta', delta);
        log.info('CRL generated', { crlNumber: String(fullNumber), entries: fullCount, deltaEntries: deltaCount, ms: Date.now() - t0 });
        await crls.prune(10).catch(() => undefined);
        return full;
      } catch (e) {
        if (e instanceof CrlNumberTaken && attempt < MAX_NUMBER_ATTEMPTS) continue;
        throw e;
      }
    }
  }

  private async sign(build: () => Promise<Buffer>): Promise<Buffer> {
    try {
      return await build();
    } catch (e) {
      throw e instanceof HsmError ? hsmFailure(e) : e;
    }
  }
}

/** A stored CRL with its HTTP validator: the kind (a shard with its number), the CRL number and a digest of the DER. */
export function served(record: CrlRecord): ServedCrl {
  const kind = record.kind === 'shard' ? `shard${record.shard}` : record.kind;
  return { record, etag: `"${kind}-${record.crlNumber}-${createHash('sha256').update(record.der).digest('base64url').slice(0, 16)}"` };
}

export async function* entries(pages: AsyncIterable<RevokedRow[]>): AsyncGenerator<RevokedEntry[]> {
  for await (const page of pages) {
    yield page.map((r) => ({
      serial: Buffer.from(r.serial.length % 2 ? '0' + r.serial : r.serial, 'hex'),
      revokedAt: new Date(r.revokedAt),
      reason: r.reason || undefined,
      invalidityDate: r.invalidityDate === null ? undefined : new Date(r.invalidityDate),
    }));
  }
}

/**
 * Runs a job a short while after the last of a burst of triggers (a burst of
 * revocations makes one CRL), and at least every `everyMs`.
 */
export class Debouncer {
  private timer?: NodeJS.Timeout;
  private periodic?: NodeJS.Timeout;
  private inflight?: Promise<void>;

  constructor(
    /** `periodic`: fired by the periodic timer rather than by a trigger or a flush */
    private readonly job: (periodic: boolean) => Promise<unknown>,
    private readonly delayMs: number,
    private readonly everyMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.periodic) return;
    this.periodic = setInterval(() => this.fire(true), this.everyMs);
    this.periodic.unref();
  }

  trigger(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), this.delayMs);
    this.timer.unref();
  }

  private fire(periodic = false): Promise<void> {
    this.timer = undefined;
    const run = this.job(periodic).then(
      () => undefined,
      (e) => this.log.error('background job failed', { error: (e as Error).message }),
    );
    this.inflight = run.finally(() => {
      if (this.inflight === run) this.inflight = undefined;
    });
    return run;
  }

  /**
   * For a graceful stop: a run still waiting for its delay runs now, and a
   * run in progress is waited for, so nothing triggered before the stop is
   * left undone.
   */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      await this.fire();
    } else if (this.inflight) {
      await this.inflight;
    }
  }

  /** No more periodic runs; a run waiting for its delay stays pending for flush(). */
  stop(): void {
    if (this.periodic) clearInterval(this.periodic);
    this.periodic = undefined;
  }
}
