import type { Knex } from 'knex';

/**
 * M-of-N quorum (src/quorum/): the approvers' public keys, the stored
 * threshold (changed only under quorum), pending requests and their
 * approvals. An approval row is unique per (request, approver): an approver
 * is counted once however often it signs.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('quorum_approvers', (t) => {
    t.string('id', 32).primary();
    t.string('name', 128).notNullable();
    // 'ecdsa-p256' or 'ed25519'
    t.string('algorithm', 16).notNullable();
    // DER SubjectPublicKeyInfo, base64
    t.text('public_key').notNullable();
    // SHA-256 of the SPKI, hex: one key is registered once
    t.string('fingerprint', 64).notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('removed_at');
    t.string('added_by', 160);
  });
  await knex.schema.createTable('quorum_settings', (t) => {
    t.string('name', 64).primary();
    t.text('value').notNullable();
    t.bigInteger('updated_at').notNullable();
  });
  await knex.schema.createTable('quorum_requests', (t) => {
    t.string('id', 32).primary();
    t.string('kind', 64).notNullable();
    // the operation's parameters, JSON (never secrets: token hashes at most)
    t.text('operation').notNullable();
    // canonical JSON of {id, kind, operation, requestedBy, createdAt, expiresAt, threshold}: what approvers sign
    t.text('description').notNullable();
    t.string('requested_by', 160).notNullable();
    t.integer('threshold').notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('expires_at').notNullable();
    // pending, executing, executed, failed
    t.string('state', 16).notNullable();
    t.bigInteger('executed_at');
    // what the execution recorded (no secrets), JSON; or the error message
    t.text('result');
    t.index(['state', 'created_at']);
  });
  await knex.schema.createTable('quorum_approvals', (t) => {
    t.string('request_id', 32).notNullable().references('id').inTable('quorum_requests');
    t.string('approver_id', 32).notNullable().references('id').inTable('quorum_approvers');
    t.text('signature').notNullable();
    t.bigInteger('approved_at').notNullable();
    t.primary(['request_id', 'approver_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('quorum_approvals');
  await knex.schema.dropTableIfExists('quorum_requests');
  await knex.schema.dropTableIfExists('quorum_settings');
  await knex.schema.dropTableIfExists('quorum_approvers');
}
