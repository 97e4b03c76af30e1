import type { Knex } from 'knex';

/**
 * The initial schema. Times are epoch milliseconds (bigint), so SQLite and
 * PostgreSQL store and compare them the same way.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('certificates', (t) => {
    t.bigIncrements('id').primary();
    // lowercase hex; the unique index is the final word on serial uniqueness
    t.string('serial', 40).notNullable().unique();
    // 'pending': serial reserved, not yet signed (never valid); 'issued': signed and stored
    t.string('state', 16).notNullable();
    t.string('profile', 64).notNullable();
    t.text('subject').notNullable();
    t.text('sans').notNullable();
    t.bigInteger('not_before').notNullable();
    t.bigInteger('not_after').notNullable();
    t.binary('der');
    t.string('requester_id', 64);
    t.bigInteger('created_at').notNullable();
    t.bigInteger('revoked_at');
    t.integer('revocation_reason');
    t.bigInteger('invalidity_date');
    t.index(['requester_id', 'id']);
    t.index(['revoked_at']);
  });
  await knex.schema.createTable('tokens', (t) => {
    t.string('id', 32).primary();
    t.string('name', 128).notNullable();
    t.string('role', 16).notNullable();
    // SHA-256 of the token; the token itself is never stored
    t.string('hash', 64).notNullable().unique();
    t.text('scope');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('expires_at');
    t.bigInteger('revoked_at');
  });
  await knex.schema.createTable('ca_certificates', (t) => {
    t.bigIncrements('id').primary();
    // 'root', 'issuing' or 'ocsp'
    t.string('role', 16).notNullable();
    t.string('key_label', 128).notNullable();
    t.string('serial', 40).notNullable();
    t.binary('der').notNullable();
    t.bigInteger('not_after').notNullable();
    t.bigInteger('created_at').notNullable();
    t.index(['role', 'id']);
  });
  await knex.schema.createTable('settings', (t) => {
    t.string('key', 64).primary();
    t.text('value').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['settings', 'ca_certificates', 'tokens', 'certificates']) await knex.schema.dropTableIfExists(table);
}
