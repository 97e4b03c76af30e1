import type { Knex } from 'knex';
import { Database, storageError } from './database';

export type CaRole = 'root' | 'issuing' | 'ocsp';

export interface CaCertificateRecord {
  id: number;
  role: CaRole;
  keyLabel: string;
  serial: string;
  der: Buffer;
  notAfter: Date;
  createdAt: Date;
}

/** The CA's own certificates (root, issuing CA, OCSP signers) and small settings. */
export class CaStore {
  private readonly knex: Knex;

  constructor(db: Database) {
    this.knex = db.knex;
  }

  /** The newest certificate of a role. */
  async current(role: CaRole): Promise<CaCertificateRecord | undefined> {
    try {
      const row = await this.knex('ca_certificates').where({ role }).orderBy('id', 'desc').first();
      return row && toRecord(row);
    } catch (e) {
      throw storageError(e);
    }
  }

  /**
   * The newest certificate of a role that `isOurs` accepts (the OCSP
   * responder certificates of one issuing CA among several), newest first.
   */
  async newest(role: CaRole, isOurs: (der: Buffer) => boolean): Promise<CaCertificateRecord | undefined> {
    try {
      const rows = await this.knex('ca_certificates').where({ role }).orderBy('id', 'desc').limit(200);
      for (const row of rows) {
        const r = toRecord(row);
        if (isOurs(r.der)) return r;
      }
      return undefined;
    } catch (e) {
      throw storageError(e);
    }
  }

  async add(r: Omit<CaCertificateRecord, 'id'>): Promise<void> {
    try {
      await this.knex('ca_certificates').insert({
        role: r.role,
        key_label: r.keyLabel,
        serial: r.serial,
        der: r.der,
        not_after: r.notAfter.getTime(),
        created_at: r.createdAt.getTime(),
      });
    } catch (e) {
      throw storageError(e);
    }
  }

  async getSetting(key: string): Promise<string | undefined> {
    const row = await this.knex('settings').where({ key }).first();
    return row?.value;
  }

  async setSetting(key: string, value: string): Promise<void> {
    await this.knex('settings').insert({ key, value }).onConflict('key').merge();
  }
}

function toRecord(row: Record<string, unknown>): CaCertificateRecord {
  return {
    id: Number(row.id),
    role: row.role as CaRole,
    keyLabel: String(row.key_label),
    serial: String(row.serial),
    der: Buffer.from(row.der as Buffer),
    notAfter: new Date(Number(row.not_after)),
    createdAt: new Date(Number(row.created_at)),
  };
}
