/** Every pre-issuance lint, one per file in rules/ (docs/security.md lists them with their sources). */
import type { CertificateLint, CrlLint, Lint } from './lint';
import { e_basic_constraints_not_critical } from './rules/e_basic_constraints_not_critical';
import { e_ca_basic_constraints_ca_false } from './rules/e_ca_basic_constraints_ca_false';
import { e_ca_key_cert_sign_not_set } from './rules/e_ca_key_cert_sign_not_set';
import { e_cert_extensions_version_not_3 } from './rules/e_cert_extensions_version_not_3';
import { e_crl_entry_serial_number_invalid } from './rules/e_crl_entry_serial_number_invalid';
import { e_crl_invalid_reason_code } from './rules/e_crl_invalid_reason_code';
import { e_crl_missing_authority_key_identifier } from './rules/e_crl_missing_authority_key_identifier';
import { e_crl_next_update_not_after_this_update } from './rules/e_crl_next_update_not_after_this_update';
import { e_crl_number_longer_than_20_octets } from './rules/e_crl_number_longer_than_20_octets';
import { e_crl_number_missing } from './rules/e_crl_number_missing';
import { e_crl_number_not_increasing } from './rules/e_crl_number_not_increasing';
import { e_crl_wrong_time_format_pre2050 } from './rules/e_crl_wrong_time_format_pre2050';
import { e_dnsname_bad_character_in_label } from './rules/e_dnsname_bad_character_in_label';
import { e_dnsname_empty_label } from './rules/e_dnsname_empty_label';
import { e_dnsname_label_too_long } from './rules/e_dnsname_label_too_long';
import { e_dnsname_left_label_wildcard_correct } from './rules/e_dnsname_left_label_wildcard_correct';
import { e_dnsname_wildcard_only_in_left_label } from './rules/e_dnsname_wildcard_only_in_left_label';
import { e_ecdsa_ee_invalid_ku } from './rules/e_ecdsa_ee_invalid_ku';
import { e_ext_authority_key_identifier_mismatch } from './rules/e_ext_authority_key_identifier_mismatch';
import { e_ext_authority_key_identifier_missing } from './rules/e_ext_authority_key_identifier_missing';
import { e_ext_duplicate_extension } from './rules/e_ext_duplicate_extension';
import { e_ext_san_ip_address_wrong_length } from './rules/e_ext_san_ip_address_wrong_length';
import { e_ext_san_missing } from './rules/e_ext_san_missing';
import { e_ext_san_no_entries } from './rules/e_ext_san_no_entries';
import { e_ext_subject_key_identifier_mismatch } from './rules/e_ext_subject_key_identifier_mismatch';
import { e_ext_subject_key_identifier_missing } from './rules/e_ext_subject_key_identifier_missing';
import { e_idn_dnsname_malformed_unicode } from './rules/e_idn_dnsname_malformed_unicode';
import { e_serial_number_longer_than_20_octets } from './rules/e_serial_number_longer_than_20_octets';
import { e_serial_number_low_entropy } from './rules/e_serial_number_low_entropy';
import { e_serial_number_not_positive } from './rules/e_serial_number_not_positive';
import { e_sub_cert_basic_constraints_ca_true } from './rules/e_sub_cert_basic_constraints_ca_true';
import { e_sub_cert_eku_any_present } from './rules/e_sub_cert_eku_any_present';
import { e_sub_cert_key_usage_cert_sign_bit_set } from './rules/e_sub_cert_key_usage_cert_sign_bit_set';
import { e_subject_common_name_not_from_san } from './rules/e_subject_common_name_not_from_san';
import { e_subject_dn_attribute_max_length } from './rules/e_subject_dn_attribute_max_length';
import { e_subject_dn_string_type } from './rules/e_subject_dn_string_type';
import { e_subject_printable_string_badalpha } from './rules/e_subject_printable_string_badalpha';
import { e_tls_server_cert_valid_time_longer_than_398_days } from './rules/e_tls_server_cert_valid_time_longer_than_398_days';
import { e_underscore_not_permissible_in_dnsname } from './rules/e_underscore_not_permissible_in_dnsname';
import { e_validity_longer_than_profile_maximum } from './rules/e_validity_longer_than_profile_maximum';
import { e_validity_not_after_before_not_before } from './rules/e_validity_not_after_before_not_before';
import { e_wrong_time_format_pre2050 } from './rules/e_wrong_time_format_pre2050';

export const CERTIFICATE_LINTS: readonly CertificateLint[] = [
  e_basic_constraints_not_critical,
  e_ca_basic_constraints_ca_false,
  e_ca_key_cert_sign_not_set,
  e_cert_extensions_version_not_3,
  e_dnsname_bad_character_in_label,
  e_dnsname_empty_label,
  e_dnsname_label_too_long,
  e_dnsname_left_label_wildcard_correct,
  e_dnsname_wildcard_only_in_left_label,
  e_ecdsa_ee_invalid_ku,
  e_ext_authority_key_identifier_mismatch,
  e_ext_authority_key_identifier_missing,
  e_ext_duplicate_extension,
  e_ext_san_ip_address_wrong_length,
  e_ext_san_missing,
  e_ext_san_no_entries,
  e_ext_subject_key_identifier_mismatch,
  e_ext_subject_key_identifier_missing,
  e_idn_dnsname_malformed_unicode,
  e_serial_number_longer_than_20_octets,
  e_serial_number_low_entropy,
  e_serial_number_not_positive,
  e_sub_cert_basic_constraints_ca_true,
  e_sub_cert_eku_any_present,
  e_sub_cert_key_usage_cert_sign_bit_set,
  e_subject_common_name_not_from_san,
  e_subject_dn_attribute_max_length,
  e_subject_dn_string_type,
  e_subject_printable_string_badalpha,
  e_tls_server_cert_valid_time_longer_than_398_days,
  e_underscore_not_permissible_in_dnsname,
  e_validity_longer_than_profile_maximum,
  e_validity_not_after_before_not_before,
  e_wrong_time_format_pre2050,
];

export const CRL_LINTS: readonly CrlLint[] = [
  e_crl_entry_serial_number_invalid,
  e_crl_invalid_reason_code,
  e_crl_missing_authority_key_identifier,
  e_crl_next_update_not_after_this_update,
  e_crl_number_longer_than_20_octets,
  e_crl_number_missing,
  e_crl_number_not_increasing,
  e_crl_wrong_time_format_pre2050,
];

export const ALL_LINTS: readonly Lint[] = [...CERTIFICATE_LINTS, ...CRL_LINTS];
export const LINT_NAMES: ReadonlySet<string> = new Set(ALL_LINTS.map((l) => l.name));
