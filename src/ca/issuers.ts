import { Hsm } from '../hsm/hsm';
import { Logger } from '../log';
import { OcspRequestInfo, parseOcspRequest } from '../ocsp/request';
import { OcspAnswer, OcspResponder, OcspSource } from '../ocsp/responder';
import { ResponderCertificateManager } from '../ocsp/responder-certificate';
import { IssuerHashes, certIdMatchesIssuer, issuerHashes } from '../ocsp/response';
import { CrossRecord, IdTaken, IssuerStatus, IssuerStore, RootRecord, RootStatus } from '../storage/issuer-store';
import { CaStore } from '../storage/ca-store';
import { Clock } from '../clock';
import { CaError } from '../errors';
import { readCertificate, serialHex } from './certificate';
import { CrlService } from './crl-service';
import { CaHierarchy, CaIdentity, CaLinks, identity } from './hierarchy';

/** The id of the issuing CA (and root) made at first start: every certificate from before migration 013 is its. */
export const FIRST_ISSUER_ID = 1;

/** Where an issuer's certificates point (RFC 5280 4.2.1.13, 4.2.2.1): stable URLs of its own, whichever issuer is active. */
export interface IssuerLinks extends CaLinks {
  /** the names its CRLs' issuingDistributionPoint carries */
  crlNames: string[];
  deltaCrlUrl: string;
}

/**
 * The first issuer keeps the URLs its certificates have always carried
 * (contract section 3: /ca/issuer.crt, /crl, /crl/delta); each later issuer
 * has stable URLs of its own. Every issuer's certificate and CRL are also
 * served at /ca/issuer/{id}.crt and /crl/issuer/{id}.
 */
export function issuerLinks(publicUrl: string, id: number): IssuerLinks {
  if (id === FIRST_ISSUER_ID) {
    return { ocspUrl: `${publicUrl}/ocsp`, caIssuersUrl: `${publicUrl}/ca/issuer.crt`, crlUrl: `${publicUrl}/crl`, crlNames: [`${publicUrl}/crl`], deltaCrlUrl: `${publicUrl}/crl/delta` };
  }
  const crlUrl = `${publicUrl}/crl/issuer/${id}`;
  return { ocspUrl: `${publicUrl}/ocsp`, caIssuersUrl: `${publicUrl}/ca/issuer/${id}.crt`, crlUrl, crlNames: [crlUrl], deltaCrlUrl: `${crlUrl}/delta` };
}

/** What answers for one issuer: its delegated OCSP responder and its CRLs. */
export interface IssuerServices {
  responders: ResponderCertificateManager;
  ocsp: OcspResponder;
  crls: CrlService;
}

/** One issuing CA as the running service holds it. */
export interface Issuer extends IssuerServices {
  id: number;
  keyLabel: string;
  status: IssuerStatus;
  createdAt: Date;
  identity: CaIdentity;
  rootId: number;
  /** the root that signed it */
  root: CaIdentity;
  links: IssuerLinks;
  hashes: IssuerHashes;
}

export interface Root {
  id: number;
  keyLabel: string;
  status: RootStatus;
  createdAt: Date;
  identity: CaIdentity;
}

export interface IssuerRegistryOptions {
  store: IssuerStore;
  caStore: CaStore;
  hsm: Hsm;
  clock: Clock;
  log: Logger;
  publicUrl: string;
  /**
   * builds (and readies: responder certificate loaded or issued, CRLs loaded
   * or built) one issuer's services; `prepare`: for a rotation, in whichever
   * process runs it (a follower worker too), before the issuer is active
   */
  services(issuer: { id: number; identity: CaIdentity; links: IssuerLinks; prepare?: boolean }): Promise<IssuerServices>;
}

/**
 * The issuing CAs (and roots) of this CA (issue 17): one active issuer signs
 * new certificates; previous issuers keep answering OCSP and CRLs for what
 * they signed. The database is the truth; each process keeps its view and
 * reloads it (load()) when another process ran a ceremony.
 */
export class IssuerRegistry {
  private readonly issuers = new Map<number, Issuer>();
  private readonly rootMap = new Map<number, Root>();
  private crossList: CrossRecord[] = [];
  private activeId = FIRST_ISSUER_ID;
  private version = '';
  private loading?: Promise<void>;

  constructor(private readonly o: IssuerRegistryOptions) {}

  /**
   * Opens the registry. A database from before migration 013 (or a first
   * start) has no issuer rows yet: the hierarchy loaded by
   * loadOrCreateHierarchy becomes issuer 1 and root 1.
   */
  static async open(o: IssuerRegistryOptions, first: CaHierarchy): Promise<IssuerRegistry> {
    const r = new IssuerRegistry(o);
    const now = o.clock.now();
    if ((await o.store.roots()).length === 0) {
      await o.store.addRoot({ id: FIRST_ISSUER_ID, keyLabel: first.root.signer.label, der: first.root.certificate, status: 'active', createdAt: now }).catch(ignoreTaken);
    }
    if ((await o.store.issuers()).length === 0) {
      await o.store
        .addIssuer({ id: FIRST_ISSUER_ID, keyLabel: first.issuing.signer.label, der: first.issuing.certificate, rootId: FIRST_ISSUER_ID, status: 'active', createdAt: now })
        .catch(ignoreTaken);
    }
    await r.load();
    return r;
  }

  /** Reads the issuers and roots again; builds what is new, follows status changes. Concurrent callers share one run. */
  load(): Promise<void> {
    return (this.loading ??= this.doLoad().finally(() => (this.loading = undefined)));
  }

  /** load() when another process changed the issuers or roots (cheap when nothing changed). */
  async refresh(): Promise<boolean> {
    if ((await this.o.store.version()) === this.version) return false;
    await this.load();
    return true;
  }

  private async doLoad(): Promise<void> {
    const { store } = this.o;
    const version = await store.version();
    for (const r of await store.roots()) {
      const known = this.rootMap.get(r.id);
      if (known) known.status = r.status;
      else this.rootMap.set(r.id, { id: r.id, keyLabel: r.keyLabel, status: r.status, createdAt: r.createdAt, identity: await identity(this.o, `root (id ${r.id})`, r.der, r.keyLabel) });
    }
    this.crossList = await store.crosses();
    let active: number | undefined;
    for (const rec of await store.issuers()) {
      if (rec.status === 'pending') continue;
      if (rec.status === 'active') active = rec.id;
      const known = this.issuers.get(rec.id);
      if (known) {
        known.status = rec.status;
        continue;
      }
      const root = this.rootMap.get(rec.rootId);
      if (!root) throw new CaError('internal', 'internalError', `issuer ${rec.id} names an unknown root ${rec.rootId}`);
      const id = await identity(this.o, `issuing (id ${rec.id})`, rec.der, rec.keyLabel);
      this.issuers.set(rec.id, await this.build(rec.id, rec.keyLabel, rec.status, rec.createdAt, rec.rootId, id, root.identity));
    }
    if (active === undefined) throw new CaError('internal', 'internalError', 'no active issuing CA in the database');
    this.activeId = active;
    this.version = version;
  }

  /** An issuer's runtime: identity, links and its own OCSP responder and CRLs. */
  async build(id: number, keyLabel: string, status: IssuerStatus, createdAt: Date, rootId: number, ident: CaIdentity, root: CaIdentity): Promise<Issuer> {
    const links = issuerLinks(this.o.publicUrl, id);
    const services = await this.o.services({ id, identity: ident, links, prepare: status === 'pending' });
    return { id, keyLabel, status, createdAt, identity: ident, rootId, root, links, hashes: issuerHashes(ident.name, ident.spki), ...services };
  }

  active(): Issuer {
    return this.issuers.get(this.activeId)!;
  }

  byId(id: number): Issuer | undefined {
    return this.issuers.get(id);
  }

  /** Every issuer, oldest first. */
  all(): Issuer[] {
    return [...this.issuers.values()].sort((a, b) => a.id - b.id);
  }

  roots(): Root[] {
    return [...this.rootMap.values()].sort((a, b) => a.id - b.id);
  }

  root(id: number): Root | undefined {
    return this.rootMap.get(id);
  }

  activeRoot(): Root {
    const r = this.roots().find((x) => x.status === 'active');
    if (!r) throw new CaError('internal', 'internalError', 'no active root CA in the database');
    return r;
  }

  crosses(): CrossRecord[] {
    return this.crossList;
  }

  /**
   * The two-tier hierarchy of the active issuer, read at each use: the
   * issuing CA that signs new certificates and the root that signed it.
   */
  hierarchy(): CaHierarchy {
    const self = this;
    return {
      get root() {
        return self.active().root;
      },
      get issuing() {
        return self.active().identity;
      },
    };
  }

  /** The issuer an OCSP CertID names (issuerNameHash and issuerKeyHash, RFC 6960 4.1.1). */
  issuerOfCertId(c: Parameters<typeof certIdMatchesIssuer>[0]): Issuer | undefined {
    for (const i of this.issuers.values()) if (certIdMatchesIssuer(c, i.hashes)) return i;
    return undefined;
  }

  /** A summary for the API and the CLI. */
  describe(i: Issuer): IssuerSummary {
    const c = readCertificate(i.identity.certificate);
    return {
      id: i.id,
      status: i.status as 'active' | 'previous',
      keyLabel: i.keyLabel,
      serialNumber: serialHex(c.serial),
      notBefore: c.notBefore.toISOString(),
      notAfter: c.notAfter.toISOString(),
      createdAt: i.createdAt.toISOString(),
      rootId: i.rootId,
      caIssuersUrl: i.links.caIssuersUrl,
      crlUrl: i.links.crlUrl,
    };
  }
}

export interface IssuerSummary {
  id: number;
  status: 'active' | 'previous';
  keyLabel: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  createdAt: string;
  rootId: number;
  caIssuersUrl: string;
  crlUrl: string;
}

function ignoreTaken(e: unknown): void {
  // another process of the same service imported the first issuer at the same moment
  if (!(e instanceof IdTaken)) throw e;
}

/**
 * The OCSP source for every issuer (RFC 6960 4.1.1): a request goes to the
 * responder of the issuer its CertID names, which signs with that issuer's
 * delegated responder certificate. A CertID that names no issuer of this CA
 * goes to the active issuer's responder, which answers `unauthorized`.
 */
export class MultiIssuerOcsp implements OcspSource {
  constructor(private readonly registry: IssuerRegistry) {}

  respond(request: Buffer): Promise<OcspAnswer> {
    const all = this.registry.all();
    if (all.length === 1) return all[0].ocsp.respond(request);
    let info: OcspRequestInfo;
    try {
      info = parseOcspRequest(request);
    } catch {
      // malformed: the responder itself answers malformedRequest
      return this.registry.active().ocsp.respond(request);
    }
    const first = info.certIds.find((c) => c.hash !== undefined);
    const target = (first && this.registry.issuerOfCertId(first)) || this.registry.active();
    return target.ocsp.respondParsed(info);
  }
}

/** Roots as stored rows, for the ceremonies. */
export type { RootRecord };

/**
 * An object that stands for whichever `current()` returns at each use (the
 * active issuer's CRL service or responder), for the code that serves one
 * issuer and was handed the object once: a rotation switches it without
 * re-wiring the routes and jobs that hold it. Methods are bound to the
 * object current at the time they are read.
 */
export function activeView<T extends object>(current: () => T): T {
  return new Proxy({} as T, {
    get(_t, prop) {
      const target = current();
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
    has: (_t, prop) => Reflect.has(current(), prop),
  });
}
