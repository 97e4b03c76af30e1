import type { Knex } from 'knex';

/**
 * ACME, second round:
 * - acme_orders.profile: the profile an order asked for (draft-ietf-acme-profiles);
 *   orders made before it are tls-server orders.
 * - acme_authorizations.validated_at, and acme_order_authorizations: one valid
 *   authorization may serve several orders of its account (authorization reuse);
 *   every existing authorization belongs to the order that made it.
 * - an index for the sweep that resumes validations left "processing".
 * - External Account Binding HMAC keys are secrets needed only until they bind an
 *   account: those already bound are erased here (src/storage/acme-store.ts erases
 *   each new one in the binding transaction).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('acme_orders', (t) => {
    t.string('profile', 64);
  });
  await knex.schema.alterTable('acme_authorizations', (t) => {
    t.bigInteger('validated_at');
  });
  await knex.schema.createTable('acme_order_authorizations', (t) => {
    t.string('order_id', 64).notNullable();
    t.string('authz_id', 64).notNullable();
    t.primary(['order_id', 'authz_id']);
    t.index(['authz_id']);
  });
  await knex.raw('INSERT INTO acme_order_authorizations (order_id, authz_id) SELECT order_id, id FROM acme_authorizations');
  // the reuse lookup: an account's valid authorizations for one name
  await knex.schema.alterTable('acme_authorizations', (t) => {
    t.index(['account_id', 'identifier_value', 'status'], 'acme_authorizations_reuse_index');
  });
  // the sweep for validations a dead process left processing (every few seconds, on every worker)
  await knex.schema.alterTable('acme_challenges', (t) => {
    t.index(['status', 'updated_at'], 'acme_challenges_orphan_index');
  });
  await knex('acme_eab_keys').whereNotNull('account_id').update({ hmac_key: '' });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('acme_challenges', (t) => {
    t.dropIndex(['status', 'updated_at'], 'acme_challenges_orphan_index');
  });
  await knex.schema.alterTable('acme_authorizations', (t) => {
    t.dropIndex(['account_id', 'identifier_value', 'status'], 'acme_authorizations_reuse_index');
  });
  await knex.schema.dropTableIfExists('acme_order_authorizations');
  await knex.schema.alterTable('acme_authorizations', (t) => {
    t.dropColumn('validated_at');
  });
  await knex.schema.alterTable('acme_orders', (t) => {
    t.dropColumn('profile');
  });
}
