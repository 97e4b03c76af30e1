import type { Knex } from 'knex';

/**
 * The payload version of each signed audit checkpoint (src/audit/checkpoint.ts):
 * 1 signed (seq, head hash) and is what every existing row holds; 2 also
 * signs the checkpoint's time (`at`).
 *
 * One signed row per checkpoint event: a checkpoint whose signing was
 * interrupted is completed by the next one, possibly in another process
 * (AuditLog.completeInterrupted), and the unique index makes the second
 * signer of the same event step back.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('audit_checkpoints', (t) => {
    t.integer('version').notNullable().defaultTo(1);
    t.unique(['seq'], { indexName: 'audit_checkpoints_seq_unique' });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('audit_checkpoints', (t) => {
    t.dropUnique(['seq'], 'audit_checkpoints_seq_unique');
    t.dropColumn('version');
  });
}
