import type { Knex } from 'knex';

/**
 * An index that holds everything a CRL lists, for revoked certificates only.
 *
 * A full CRL counts and then reads, in id order, every revoked certificate
 * that has not expired (CertificateStore.revokedPages). Without this index
 * both passes read the whole certificates table, DER included: about 1 GB at
 * a million certificates. With it they read the index alone (SQLite: a
 * covering index; PostgreSQL: an index-only scan once the table is vacuumed).
 * Partial: a certificate enters it when it is revoked, so issuance never
 * writes to it.
 */
export const CRL_INDEX = 'certificates_revoked_crl';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    `CREATE INDEX ${CRL_INDEX} ON certificates (id, serial, revoked_at, revocation_reason, invalidity_date, not_after) WHERE revoked_at IS NOT NULL AND state = 'issued'`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX IF EXISTS ${CRL_INDEX}`);
}
