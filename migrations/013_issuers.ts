import type { Knex } from 'knex';

/**
 * Several issuing CAs and roots (issue 17, CA rotation and root renewal).
 *
 * - ca_roots: every root CA, one 'active' (the one that signs the next
 *   issuing CA), the others 'previous'. ids are given by the code (1 is the
 *   root made at first start), not by a sequence.
 * - ca_issuers: every issuing CA, with the root that signed it; 'pending'
 *   while a rotation prepares it (its OCSP responder and first CRL), then
 *   'active' (exactly one) or 'previous' (still answering OCSP and CRLs).
 * - ca_cross_certificates: a root's key certified by another root.
 * - certificates.issuer_id: the issuing CA that signed the certificate;
 *   every row from before this migration is the first issuer's (1).
 * - crls.issuer_id: each issuer is a CRL scope of its own with its own CRL
 *   number sequence (RFC 5280 5.2.3), so the full/delta CRL number becomes
 *   unique per issuer.
 * - an index for one issuer's CRL entries, like 006's for a shard: partial
 *   (revoked, issued, with an issuer: a query names the issuer, so only it
 *   can use this index and the unscoped queries keep 004's), led by the
 *   issuer, covering every column a CRL entry needs (and state, for SQLite
 *   to count it as covering with the issuer bound as a parameter).
 */
export const ISSUER_CRL_INDEX = 'certificates_revoked_issuer_crl';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('ca_roots', (t) => {
    t.integer('id').primary();
    t.string('key_label', 128).notNullable().unique();
    t.binary('der').notNullable();
    t.string('status', 16).notNullable();
    t.bigInteger('created_at').notNullable();
  });
  await knex.schema.createTable('ca_issuers', (t) => {
    t.integer('id').primary();
    t.string('key_label', 128).notNullable().unique();
    t.binary('der').notNullable();
    t.integer('root_id').notNullable();
    t.string('status', 16).notNullable();
    t.bigInteger('created_at').notNullable();
  });
  await knex.schema.createTable('ca_cross_certificates', (t) => {
    t.integer('id').primary();
    // the root whose key is certified, and the root that signed
    t.integer('subject_root_id').notNullable();
    t.integer('issuer_root_id').notNullable();
    t.binary('der').notNullable();
    t.bigInteger('created_at').notNullable();
  });
  await knex.schema.alterTable('certificates', (t) => {
    t.integer('issuer_id').notNullable().defaultTo(1);
  });
  await knex.schema.alterTable('crls', (t) => {
    t.integer('issuer_id').notNullable().defaultTo(1);
  });
  await knex.raw('DROP INDEX IF EXISTS crls_number_unique');
  await knex.raw('CREATE UNIQUE INDEX crls_issuer_number_unique ON crls (issuer_id, crl_number) WHERE shard IS NULL');
  await knex.raw(
    `CREATE INDEX ${ISSUER_CRL_INDEX} ON certificates (issuer_id, id, serial, revoked_at, revocation_reason, invalidity_date, not_after, state) WHERE revoked_at IS NOT NULL AND state = 'issued' AND issuer_id IS NOT NULL`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX IF EXISTS ${ISSUER_CRL_INDEX}`);
  await knex.raw('DROP INDEX IF EXISTS crls_issuer_number_unique');
  await knex('crls').whereNull('shard').andWhere('issuer_id', '<>', 1).delete();
  await knex.raw('CREATE UNIQUE INDEX crls_number_unique ON crls (crl_number) WHERE shard IS NULL');
  await knex.schema.alterTable('crls', (t) => t.dropColumn('issuer_id'));
  await knex.schema.alterTable('certificates', (t) => t.dropColumn('issuer_id'));
  for (const table of ['ca_cross_certificates', 'ca_issuers', 'ca_roots']) await knex.schema.dropTableIfExists(table);
}
