import type { Knex } from 'knex';
import * as m001 from './001_initial';
import * as m002 from './002_crls';
import * as m003 from './003_audit';
import * as m004 from './004_crl_index';
import * as m006 from './006_crl_shards';
import * as m007 from './007_audit_checkpoint_version';
import * as m005 from './005_blocked_keys';
import * as m008 from './008_acme';
import * as m010 from './010_certificate_created_index';
import * as m009 from './009_acme_profiles_reuse';
import * as m011 from './011_cluster';
import * as m013 from './013_issuers';
import * as m012 from './012_quorum';

/**
 * Migrations are listed here rather than discovered on disk, so the same list
 * runs from TypeScript sources (tests) and from the compiled build.
 */
const MIGRATIONS: Record<string, Knex.Migration> = {
  '001_initial': m001,
  '002_crls': m002,
  '003_audit': m003,
  '004_crl_index': m004,
  '006_crl_shards': m006,
  '007_audit_checkpoint_version': m007,
  '005_blocked_keys': m005,
  '008_acme': m008,
  '010_certificate_created_index': m010,
  '009_acme_profiles_reuse': m009,
  '011_cluster': m011,
  '013_issuers': m013,
  '012_quorum': m012,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => MIGRATIONS[name],
};
