import type { Knex } from 'knex';

/**
 * The audit log: a hash chain of events, and signed checkpoints of its head
 * (src/audit/audit-log.ts describes the design).
 *
 * `seq` is assigned by the writer (last seq + 1, under a lock), never by the
 * database sequence: a PostgreSQL sequence is not transactional, and a gap in
 * `seq` must only ever mean that an event was removed.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('audit_events', (t) => {
    t.bigIncrements('seq').primary();
    t.bigInteger('at').notNullable(); // epoch ms
    t.string('type', 32).notNullable();
    t.string('actor', 255).notNullable();
    // text, not varchar(255): a certificate subject DN can be longer
    t.text('subject');
    t.text('details').notNullable(); // canonical JSON
    t.string('prev_hash', 64).notNullable();
    t.string('hash', 64).notNullable();
    // One successor per event: the chain can never fork.
    t.unique(['prev_hash'], { indexName: 'audit_events_prev_hash_unique' });
    t.unique(['hash'], { indexName: 'audit_events_hash_unique' });
  });
  await knex.schema.createTable('audit_checkpoints', (t) => {
    t.bigIncrements('id').primary();
    t.bigInteger('seq').notNullable(); // the event whose hash was signed
    t.string('head_hash', 64).notNullable();
    t.binary('signature').notNullable();
    t.string('key_label', 128).notNullable();
    t.bigInteger('at').notNullable(); // epoch ms; informational, not signed
    t.index(['seq'], 'audit_checkpoints_seq_index');
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['audit_checkpoints', 'audit_events']) await knex.schema.dropTableIfExists(table);
}
