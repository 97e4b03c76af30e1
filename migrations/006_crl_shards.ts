import type { Knex } from 'knex';

/**
 * Partitioned CRLs (RFC 5280 5.2.5, HSMCA_CRL_SHARDS).
 *
 * - certificates.crl_shard: the shard a certificate was given at issuance, the
 *   one its cRLDistributionPoints names (`/crl/{shard}`). NULL for every
 *   certificate issued without shards (all certificates from before this
 *   migration, and all with HSMCA_CRL_SHARDS=1): their distribution point is
 *   the full CRL, which lists every revocation, so they belong to no shard.
 * - crls.shard: the shard a CRL covers; NULL for the full and delta CRLs. Each
 *   shard is a CRL scope of its own with its own CRL number sequence (RFC 5280
 *   5.2.3: numbers increase per scope), so the single unique CRL number
 *   becomes unique per shard, and stays unique across the full and delta CRLs.
 * - An index for a shard CRL's entries, like 004's for the full CRL: partial
 *   (revoked, issued, in a shard), led by the shard and then the id that the
 *   pages are read in, covering every column a CRL entry needs (and state:
 *   with a shard number bound as a parameter, SQLite counts the index as
 *   covering only when every column the query names is in it).
 */
export const SHARD_CRL_INDEX = 'certificates_revoked_crl_shard';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('certificates', (t) => {
    t.integer('crl_shard');
  });
  await knex.schema.alterTable('crls', (t) => {
    t.integer('shard');
  });
  await knex.schema.alterTable('crls', (t) => {
    t.dropUnique(['crl_number']);
  });
  await knex.raw('CREATE UNIQUE INDEX crls_number_unique ON crls (crl_number) WHERE shard IS NULL');
  await knex.raw('CREATE UNIQUE INDEX crls_shard_number_unique ON crls (shard, crl_number) WHERE shard IS NOT NULL');
  await knex.raw(
    `CREATE INDEX ${SHARD_CRL_INDEX} ON certificates (crl_shard, id, serial, revoked_at, revocation_reason, invalidity_date, not_after, state) WHERE revoked_at IS NOT NULL AND state = 'issued' AND crl_shard IS NOT NULL`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX IF EXISTS ${SHARD_CRL_INDEX}`);
  await knex('crls').whereNotNull('shard').delete();
  await knex.raw('DROP INDEX IF EXISTS crls_shard_number_unique');
  await knex.raw('DROP INDEX IF EXISTS crls_number_unique');
  await knex.schema.alterTable('crls', (t) => {
    t.unique(['crl_number']);
  });
  await knex.schema.alterTable('crls', (t) => {
    t.dropColumn('shard');
  });
  await knex.schema.alterTable('certificates', (t) => {
    t.dropColumn('crl_shard');
  });
}
