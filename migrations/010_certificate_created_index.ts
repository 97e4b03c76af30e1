import type { Knex } from 'knex';

/**
 * An index on the time certificates were issued, for the console's chart of
 * issuances per hour (GET /api/v1/stats/hourly): the last days are read as a
 * range of this index instead of the whole table. Revocations per hour use the
 * index on revoked_at of migration 001.
 */
export const CREATED_INDEX = 'certificates_created_at';

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE INDEX ${CREATED_INDEX} ON certificates (created_at)`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX IF EXISTS ${CREATED_INDEX}`);
}
