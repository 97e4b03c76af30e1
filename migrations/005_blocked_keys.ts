import type { Knex } from 'knex';

/**
 * Public keys no certificate may be issued for, keyed by the SHA-256 (hex) of
 * their SubjectPublicKeyInfo as Boulder's blockedKeys table is. A key enters
 * when a certificate is revoked for keyCompromise (the certificate's serial
 * is kept) or when an admin adds it; it never leaves. `id` orders the listing
 * (newest first) and its cursors.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('blocked_keys', (t) => {
    t.bigIncrements('id').primary();
    t.string('spki_sha256', 64).notNullable().unique();
    t.bigInteger('added_at').notNullable();
    // 'keyCompromise' (a revocation, with its serial) or 'admin'
    t.string('source', 16).notNullable();
    t.string('serial', 40);
    // who: "admin:alice", "cli"
    t.string('added_by', 160);
    t.text('comment');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('blocked_keys');
}
