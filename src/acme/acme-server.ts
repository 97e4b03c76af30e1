import type { Core } from '../core';
import { AcmeStore } from '../storage/acme-store';
import { AcmeAccounts, AcmeReply } from './accounts';
import type { AcmeRequest } from './acme-requests';
import { changeKey } from './key-change';
import { renewalInfo } from './renewal-info';
import { AcmeRequests } from './acme-requests';
import { AcmeUrls, acmeBaseUrl } from './acme-urls';
import { AcmeCertificates } from './finalize-and-revoke';
import { NonceService } from './nonces';
import { AcmeOrders } from './orders';
import { Validator } from './validator';

/** The ACME server's parts, wired from the core (its state in the database, its issuance through the core's pipeline). */
export interface AcmeServer {
  urls: AcmeUrls;
  nonces: NonceService;
  requests: AcmeRequests;
  accounts: AcmeAccounts;
  orders: AcmeOrders;
  certificates: AcmeCertificates;
  validator: Validator;
  changeKey(r: AcmeRequest): Promise<AcmeReply>;
  renewalInfo(id: string): Promise<AcmeReply>;
  directory(): Record<string, unknown>;
}

/** `issueLimit`: the REST API's issuance limits (per token, per address), taken by every finalization too. */
export function openAcmeServer(core: Core, opts: { issueLimit?: (ip: string | undefined, tokenId: string) => void } = {}): AcmeServer {
  const { config, clock, audit, log } = core;
  const store = new AcmeStore(core.db);
  const urls = new AcmeUrls(acmeBaseUrl(config));
  const nonces = new NonceService({ store, clock });
  const requests = new AcmeRequests({ store, nonces, urls });
  const accounts = new AcmeAccounts({ store, tokens: core.tokenStore, clock, audit, config: config.acme, urls });
  const validator = new Validator({ store, clock, log, audit, config: config.acme });
  const orders = new AcmeOrders({ store, clock, audit, config: config.acme, urls, accounts, profiles: core.profiles, validator });
  const certificates = new AcmeCertificates({
    store,
    clock,
    certificates: core.certificates,
    issuance: core.issuance,
    revocation: core.revocation,
    hierarchy: core.hierarchy,
    links: core.links,
    issuerOf: (id) => {
      const i = core.issuers.byId(id);
      return i && { certificate: i.identity.certificate, caIssuersUrl: i.links.caIssuersUrl };
    },
    audit,
    urls,
    accounts,
    orders,
    issueLimit: opts.issueLimit,
  });
  return {
    urls,
    nonces,
    requests,
    accounts,
    orders,
    certificates,
    validator,
    changeKey: (r) => changeKey(r, { store, urls, audit }),
    renewalInfo: (id) => renewalInfo(id, { issuerKeyId: core.issuers.all().map((i) => i.identity.keyId), certificates: core.certificates, clock }),
    /** RFC 8555 7.1.1 */
    directory: () => ({
      newNonce: urls.newNonce,
      newAccount: urls.newAccount,
      newOrder: urls.newOrder,
      revokeCert: urls.revokeCert,
      keyChange: urls.keyChange,
      renewalInfo: urls.renewalInfo,
      meta: {
        externalAccountRequired: config.acme.requireEab,
        // draft-ietf-acme-profiles 3: name → description of each profile an order may name
        profiles: Object.fromEntries(config.acme.profiles.map((n) => [n, core.profiles.get(n)!.description])),
        ...(config.acme.termsOfService ? { termsOfService: config.acme.termsOfService } : {}),
      },
    }),
  };
}
