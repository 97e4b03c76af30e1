import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import type { Core } from '../core';
import { StartupError } from '../errors';
import { TlsMaterial, TlsMaterialError, issueServerCertificate, readMaterialFiles, sameNames, saveMaterial, serverCertificateFiles } from './server-certificate';

/** Renewed once this fraction of its life has passed (contract section 6: before two thirds). */
export const RENEW_AT_FRACTION = 2 / 3;
/** How long a follower waits at start for the certificate the leader (or the cluster's primary) makes. */
const FOLLOWER_WAIT_MS = 10_000;

export interface ServerTlsOptions {
  /** the leader (or a lone process) issues and renews; a follower of several workers only reads the files the leader writes */
  canIssue: boolean;
}

/**
 * The HTTPS listener's certificate while the service runs. Two sources:
 *
 * - issued: hsmca's own issuing CA issues it at start for HSMCA_TLS_NAMES,
 *   saved in the data folder and reused across restarts while it is good
 *   (issued by the current issuing CA, not revoked, the same names, less
 *   than two thirds of its life gone); `refresh()` renews it after that.
 *   With several workers the leader renews the files and followers reload
 *   them.
 * - brought: HSMCA_TLS_CERT and HSMCA_TLS_KEY, served as they are and
 *   reloaded by `refresh()` when the files change.
 *
 * Whoever serves subscribes with `onChange` and swaps its secure context:
 * no restart, and connections already open keep theirs.
 */
export class ServerTls {
  private material: TlsMaterial;
  private readonly subscribers: ((m: TlsMaterial) => void)[] = [];
  private refreshing?: Promise<boolean>;

  private constructor(
    private readonly core: Core,
    private readonly opts: ServerTlsOptions,
    first: TlsMaterial,
  ) {
    this.material = first;
  }

  static async open(core: Core, opts: ServerTlsOptions): Promise<ServerTls> {
    const { config } = core;
    if (config.tlsCertFile && config.tlsKeyFile) {
      let m: TlsMaterial;
      try {
        m = readMaterialFiles(config.tlsCertFile, config.tlsKeyFile);
      } catch (e) {
        throw new StartupError(`HSMCA_TLS_CERT/HSMCA_TLS_KEY: ${config.tlsCertFile}, ${config.tlsKeyFile}: ${(e as Error).message}`);
      }
      if (m.notAfter <= core.clock.now()) core.log.warn('the HTTPS certificate of HSMCA_TLS_CERT has expired', { notAfter: m.notAfter.toISOString() });
      return new ServerTls(core, opts, m);
    }
    const tls = new ServerTls(core, opts, undefined as unknown as TlsMaterial);
    tls.material = await tls.openIssued();
    return tls;
  }

  /** The certificate and key served now. */
  current(): TlsMaterial {
    return this.material;
  }

  onChange(fn: (m: TlsMaterial) => void): void {
    this.subscribers.push(fn);
  }

  /**
   * The periodic job: renews an issued certificate that is due (leader),
   * adopts one renewed by the leader (follower), reloads brought files that
   * changed. True when the served certificate changed.
   */
  refresh(): Promise<boolean> {
    return (this.refreshing ??= this.refreshOnce().finally(() => (this.refreshing = undefined)));
  }

  private async refreshOnce(): Promise<boolean> {
    const { config } = this.core;
    let next: TlsMaterial | undefined;
    if (config.tlsCertFile && config.tlsKeyFile) {
      next = this.readChanged(config.tlsCertFile, config.tlsKeyFile);
    } else if (this.opts.canIssue) {
      if (!(await this.renewalReason(this.material))) return false;
      next = await this.issue();
    } else {
      const files = serverCertificateFiles(config.dataDir);
      next = this.readChanged(files.cert, files.key);
      if (next && !this.issuedHere(next)) next = undefined;
    }
    if (!next) return false;
    this.material = next;
    for (const fn of this.subscribers) fn(next);
    this.core.log.info('HTTPS server certificate in use', { serial: next.serial, notAfter: next.notAfter.toISOString() });
    return true;
  }

  /** The files' material when it differs from what is served and can be served; undefined otherwise (logged). */
  private readChanged(certFile: string, keyFile: string): TlsMaterial | undefined {
    let m: TlsMaterial;
    try {
      if (fs.readFileSync(certFile, 'utf8') === this.material.cert && fs.readFileSync(keyFile, 'utf8') === this.material.key) return undefined;
      m = readMaterialFiles(certFile, keyFile);
    } catch (e) {
      // a leader between its two renames, or an operator halfway through replacing files: the next run retries
      this.core.log.warn('the HTTPS certificate files cannot be used yet; still serving the previous one', { file: certFile, error: (e as Error).message });
      return undefined;
    }
    return m;
  }

  /** At start: the saved certificate when it is still good, else a new one (leader) or the leader's (follower, waiting briefly). */
  private async openIssued(): Promise<TlsMaterial> {
    const files = serverCertificateFiles(this.core.config.dataDir);
    const deadline = Date.now() + FOLLOWER_WAIT_MS;
    for (;;) {
      let saved: TlsMaterial | undefined;
      let problem = 'there is none yet';
      if (fs.existsSync(files.cert) || fs.existsSync(files.key)) {
        try {
          saved = readMaterialFiles(files.cert, files.key);
        } catch (e) {
          if (!(e instanceof TlsMaterialError)) throw e;
          problem = e.message;
        }
      }
      if (this.opts.canIssue) {
        const reason = saved ? await this.renewalReason(saved) : problem;
        if (!reason) return saved!;
        this.core.log.info('issuing the HTTPS server certificate', { reason });
        return this.issue();
      }
      if (saved && this.issuedHere(saved) && saved.notAfter > this.core.clock.now()) return saved;
      if (Date.now() > deadline) throw new StartupError(`HSMCA_HTTPS_PORT: no usable HTTPS server certificate in ${files.dir} (${saved ? 'it is not valid' : problem}); the leader makes it`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private async issue(): Promise<TlsMaterial> {
    const m = await issueServerCertificate(this.core.issuance, this.core.config.tlsNames);
    saveMaterial(this.core.config.dataDir, m);
    return m;
  }

  /** Signed by the current issuing CA (a data folder whose CA was made anew gets a new one too). */
  private issuedHere(m: TlsMaterial): boolean {
    const issuer = new X509Certificate(this.core.hierarchy.issuing.certificate);
    return m.leaf.checkIssued(issuer) && m.leaf.verify(issuer.publicKey);
  }

  /** Why an issued certificate must be replaced now; undefined while it is good. */
  private async renewalReason(m: TlsMaterial): Promise<string | undefined> {
    if (!this.issuedHere(m)) return 'not issued by the current issuing CA';
    if (!sameNames(m.names, this.core.config.tlsNames)) return 'HSMCA_TLS_NAMES changed';
    const renewAt = m.notBefore.getTime() + (m.notAfter.getTime() - m.notBefore.getTime()) * RENEW_AT_FRACTION;
    if (this.core.clock.now().getTime() >= renewAt) return 'two thirds of its life have passed';
    const record = await this.core.certificates.get(m.serial);
    if (!record) return 'not in the certificates table';
    if (record.revokedAt) return 'revoked';
    return undefined;
  }
}
