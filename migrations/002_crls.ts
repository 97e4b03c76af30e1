import type { Knex } from 'knex';

/** Generated CRLs. Full and delta CRLs share one CRL number sequence (RFC 5280 5.2.4). */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('crls', (t) => {
    t.bigIncrements('id').primary();
    t.string('kind', 8).notNullable(); // 'full' or 'delta'
    t.bigInteger('crl_number').notNullable().unique();
    t.bigInteger('base_number'); // deltas: the full CRL they complete
    t.bigInteger('this_update').notNullable();
    t.bigInteger('next_update').notNullable();
    t.integer('entries').notNullable();
    t.binary('der').notNullable();
    t.index(['kind', 'crl_number']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('crls');
}
