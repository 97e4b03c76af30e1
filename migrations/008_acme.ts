import type { Knex } from 'knex';

/**
 * ACME server state (RFC 8555): accounts, orders, authorizations, challenges,
 * replay nonces and External Account Binding keys. Everything a request needs
 * is in the database, so any worker or instance answers any request; nonces
 * are rows consumed by a DELETE (single use across instances, RFC 8555 6.5).
 * Times are epoch milliseconds, as elsewhere.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('acme_eab_keys', (t) => {
    t.string('kid', 64).primary();
    // RFC 8555 7.3.4: the MAC key the client proves; kept to verify the binding
    t.string('hmac_key', 128).notNullable();
    t.string('token_id', 64).notNullable();
    t.bigInteger('created_at').notNullable();
    // the account it bound (a key binds one account only)
    t.string('account_id', 64);
  });
  await knex.schema.createTable('acme_accounts', (t) => {
    t.string('id', 64).primary();
    // RFC 7638 thumbprint of the account key: one account per key
    t.string('thumbprint', 64).notNullable().unique();
    t.text('jwk').notNullable();
    t.string('status', 16).notNullable();
    t.text('contact');
    t.string('token_id', 64);
    t.string('eab_kid', 64);
    t.string('created_ip', 64);
    t.bigInteger('created_at').notNullable();
    t.index(['created_ip', 'created_at']);
  });
  await knex.schema.createTable('acme_orders', (t) => {
    t.string('id', 64).primary();
    t.string('account_id', 64).notNullable();
    t.string('status', 16).notNullable();
    t.text('identifiers').notNullable();
    t.bigInteger('expires_at').notNullable();
    t.text('error');
    t.string('certificate_serial', 40);
    t.bigInteger('created_at').notNullable();
    t.index(['account_id', 'created_at']);
    t.index(['certificate_serial']);
  });
  await knex.schema.createTable('acme_authorizations', (t) => {
    t.string('id', 64).primary();
    t.string('order_id', 64).notNullable();
    t.string('account_id', 64).notNullable();
    t.string('identifier_type', 8).notNullable();
    t.string('identifier_value', 255).notNullable();
    t.boolean('wildcard').notNullable().defaultTo(false);
    t.string('status', 16).notNullable();
    t.bigInteger('expires_at').notNullable();
    t.index(['order_id']);
    t.index(['account_id', 'identifier_value']);
  });
  await knex.schema.createTable('acme_challenges', (t) => {
    t.string('id', 64).primary();
    t.string('authz_id', 64).notNullable();
    t.string('account_id', 64).notNullable();
    t.string('type', 16).notNullable();
    t.string('token', 64).notNullable();
    t.string('status', 16).notNullable();
    t.text('error');
    t.bigInteger('validated_at');
    t.bigInteger('updated_at').notNullable();
    t.index(['authz_id']);
    t.index(['account_id', 'status', 'updated_at']);
  });
  await knex.schema.createTable('acme_nonces', (t) => {
    t.string('value', 64).primary();
    t.bigInteger('expires_at').notNullable();
    t.index(['expires_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const t of ['acme_nonces', 'acme_challenges', 'acme_authorizations', 'acme_orders', 'acme_accounts', 'acme_eab_keys']) await knex.schema.dropTableIfExists(t);
}
