import type { Knex } from 'knex';

/**
 * Several hsmca instances on one PostgreSQL database (contract section 8,
 * src/cluster/):
 *
 * - cluster_instances: one row per running `hsmca serve` process (its id,
 *   host, port, when it started, its last heartbeat), so an operator sees who
 *   is alive; a graceful stop deletes its row.
 * - cluster_leader: the single lease row of the leader (the instance that
 *   holds the session advisory lock): who leads, since when, until when its
 *   lease runs unless renewed.
 * - PostgreSQL only: triggers that NOTIFY the other instances at once when a
 *   CRL is stored (channel hsmca_crl), a CA or OCSP responder certificate is
 *   stored (hsmca_keys) and a certificate is revoked (hsmca_revoked, payload
 *   the CRL shard or empty), so followers adopt new CRLs and keys and the
 *   leader builds the next CRL without polling. A NOTIFY is delivered at
 *   commit, never for a rolled-back write.
 */
export const NOTIFY_CHANNELS = { crl: 'hsmca_crl', keys: 'hsmca_keys', revoked: 'hsmca_revoked' } as const;

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('cluster_instances', (t) => {
    t.string('id', 64).primary();
    t.string('host', 255).notNullable();
    t.integer('port').notNullable();
    t.integer('pid').notNullable();
    t.bigInteger('started_at').notNullable();
    t.bigInteger('last_seen').notNullable();
  });
  await knex.schema.createTable('cluster_leader', (t) => {
    t.integer('id').primary();
    t.string('instance_id', 64).notNullable();
    t.bigInteger('since').notNullable();
    t.bigInteger('lease_until').notNullable();
  });
  if (knex.client.config.client !== 'pg') return;
  await knex.raw(`
    CREATE FUNCTION hsmca_notify_crl() RETURNS trigger AS $$
    BEGIN PERFORM pg_notify('${NOTIFY_CHANNELS.crl}', NEW.kind); RETURN NULL; END $$ LANGUAGE plpgsql`);
  await knex.raw(`CREATE TRIGGER hsmca_crl_stored AFTER INSERT ON crls FOR EACH ROW EXECUTE FUNCTION hsmca_notify_crl()`);
  await knex.raw(`
    CREATE FUNCTION hsmca_notify_keys() RETURNS trigger AS $$
    BEGIN PERFORM pg_notify('${NOTIFY_CHANNELS.keys}', NEW.role); RETURN NULL; END $$ LANGUAGE plpgsql`);
  await knex.raw(`CREATE TRIGGER hsmca_keys_stored AFTER INSERT ON ca_certificates FOR EACH ROW EXECUTE FUNCTION hsmca_notify_keys()`);
  await knex.raw(`
    CREATE FUNCTION hsmca_notify_revoked() RETURNS trigger AS $$
    BEGIN PERFORM pg_notify('${NOTIFY_CHANNELS.revoked}', COALESCE(NEW.crl_shard::text, '')); RETURN NULL; END $$ LANGUAGE plpgsql`);
  await knex.raw(`
    CREATE TRIGGER hsmca_certificate_revoked AFTER UPDATE OF revoked_at ON certificates
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION hsmca_notify_revoked()`);
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client === 'pg') {
    await knex.raw('DROP TRIGGER IF EXISTS hsmca_certificate_revoked ON certificates');
    await knex.raw('DROP TRIGGER IF EXISTS hsmca_keys_stored ON ca_certificates');
    await knex.raw('DROP TRIGGER IF EXISTS hsmca_crl_stored ON crls');
    await knex.raw('DROP FUNCTION IF EXISTS hsmca_notify_revoked()');
    await knex.raw('DROP FUNCTION IF EXISTS hsmca_notify_keys()');
    await knex.raw('DROP FUNCTION IF EXISTS hsmca_notify_crl()');
  }
  await knex.schema.dropTableIfExists('cluster_leader');
  await knex.schema.dropTableIfExists('cluster_instances');
}
