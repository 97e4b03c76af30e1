import type { Knex } from 'knex';
import { Database, storageError } from './database';

/** An ACME account as admins see it (never its key material beyond the thumbprint). */
export interface AcmeAccountSummary {
  id: string;
  status: string;
  contact: string[];
  thumbprint: string;
  tokenId: string | null;
  eabKid: string | null;
  createdAt: Date;
  createdIp: string | null;
}

/** An External Account Binding key as admins see it: never its HMAC key. */
export interface EabKeySummary {
  kid: string;
  tokenId: string;
  createdAt: Date;
  /** the account it bound; null while unused */
  accountId: string | null;
}

async function guarded<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw storageError(e);
  }
}

/**
 * The admin side of the ACME tables (migration 008): listings for the console
 * and the API, and withdrawing an unused EAB key. The ACME server's own
 * queries stay in acme-store.ts.
 */
export class AcmeAdminStore {
  private readonly knex: Knex;

  constructor(db: Database) {
    this.knex = db.knex;
  }

  /** Newest first; `before` continues after the last item of a page (created_at, id). */
  listAccounts(q: { limit: number; before?: { at: number; id: string } }): Promise<{ items: AcmeAccountSummary[]; more: boolean }> {
    return guarded(async () => {
      let query = this.knex('acme_accounts');
      if (q.before) {
        const b = q.before;
        query = query.where((w) => w.where('created_at', '<', b.at).orWhere((x) => x.where('created_at', b.at).andWhere('id', '<', b.id)));
      }
      const rows: Record<string, unknown>[] = await query.orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(q.limit + 1);
      const more = rows.length > q.limit;
      return {
        more,
        items: rows.slice(0, q.limit).map((r) => ({
          id: String(r.id),
          status: String(r.status),
          contact: r.contact == null ? [] : JSON.parse(String(r.contact)),
          thumbprint: String(r.thumbprint),
          tokenId: (r.token_id as string) ?? null,
          eabKid: (r.eab_kid as string) ?? null,
          createdAt: new Date(Number(r.created_at)),
          createdIp: (r.created_ip as string) ?? null,
        })),
      };
    });
  }

  /** Every EAB key, newest first (there is one per ACME client set up by hand: a short list). */
  listEabKeys(limit: number): Promise<EabKeySummary[]> {
    return guarded(async () =>
      (await this.knex('acme_eab_keys').orderBy([{ column: 'created_at', order: 'desc' }, { column: 'kid', order: 'asc' }]).limit(limit).select('kid', 'token_id', 'created_at', 'account_id')).map(
        (r: Record<string, unknown>) => ({ kid: String(r.kid), tokenId: String(r.token_id), createdAt: new Date(Number(r.created_at)), accountId: (r.account_id as string) ?? null }),
      ),
    );
  }

  /**
   * Withdraws an EAB key that has not bound an account yet (it can then never
   * be used). 'bound' when an account used it: deactivate the account instead.
   */
  deleteUnusedEabKey(kid: string): Promise<'deleted' | 'bound' | 'notFound'> {
    return guarded(() =>
      this.knex.transaction(async (trx) => {
        const n = await trx('acme_eab_keys').where({ kid }).whereNull('account_id').delete();
        if (n === 1) return 'deleted' as const;
        return (await trx('acme_eab_keys').where({ kid }).first('kid')) ? ('bound' as const) : ('notFound' as const);
      }),
    );
  }
}
