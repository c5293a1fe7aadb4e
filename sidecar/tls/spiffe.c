/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/spiffe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

static const char ks_scheme[] = "spiffe://";
#define KS_SCHEME_LEN (sizeof(ks_scheme) - 1)

static bool td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

/* Shared by IDs and patterns; allow_star admits "*" as a whole segment. */
static int check(const char *s, bool allow_star, const char **why)
{
	const char *p, *td, *seg;
	size_t len;

	*why = NULL;
	if (!s) {
		*why = "empty";
		return -EINVAL;
	}
	len = strlen(s);
	if (len == 0) {
		*why = "empty";
		return -EINVAL;
	}
	if (len > KS_SPIFFE_MAX) {
		*why = "longer than 2048 bytes";
		return -EINVAL;
	}
	if (strncmp(s, ks_scheme, KS_SCHEME_LEN) != 0) {
		*why = "scheme is not lowercase spiffe://";
		return -EINVAL;
	}
	td = p = s + KS_SCHEME_LEN;
	while (*p && *p != '/') {
		if (!td_char(*p)) {
			*why = (*p >= 'A' && *p <= 'Z')
				   ? "trust domain has uppercase characters"
				   : "trust domain has a character outside [a-z0-9.-_] (port, "
				     "userinfo, query?)";
			return -EINVAL;
		}
		p++;
	}
	if (p == td) {
		*why = "trust domain is empty";
		return -EINVAL;
	}
	if ((size_t)(p - td) > KS_SPIFFE_TD_MAX) {
		*why = "trust domain longer than 255 bytes";
		return -EINVAL;
	}
	if (*p == '\0') {
		*why = "path is empty (a trust domain, not a workload ID)";
		return -EINVAL;
	}
	/* p points at '/': walk the segments. */
	while (*p == '/') {
		seg = ++p;
		while (*p && *p != '/')
			p++;
		if (p == seg) {
			*why = "path has an empty segment or a trailing slash";
			return -EINVAL;
		}
		if ((p - seg == 1 && seg[0] == '.') ||
		    (p - seg == 2 && seg[0] == '.' && seg[1] == '.')) {
			*why = "path has a '.' or '..' segment";
			return -EINVAL;
		}
		if (allow_star && p - seg == 1 && seg[0] == '*')
			continue;
		for (const char *c = seg; c < p; c++) {
			if (!path_char(*c)) {
				*why = allow_star ? "path has a character outside [a-zA-Z0-9.-_] "
						    "('*' must be a whole segment)"
						  : "path has a character outside [a-zA-Z0-9.-_] "
						    "(percent-encoding, query and fragment are "
						    "not allowed)";
				return -EINVAL;
			}
		}
	}
	return 0;
}

int ks_spiffe_validate(const char *id, const char **why)
{
	return check(id, false, why);
}

int ks_spiffe_pattern_validate(const char *pattern, const char **why)
{
	return check(pattern, true, why);
}

int ks_spiffe_td_parse(const char *in, char *td, size_t tdlen, const char **why)
{
	char probe[KS_SPIFFE_TD_MAX + 16];
	size_t len;

	if (strncmp(in, ks_scheme, KS_SCHEME_LEN) == 0)
		in += KS_SCHEME_LEN;
	len = strlen(in);
	if (len && in[len - 1] == '/')
		len--;
	if (len > KS_SPIFFE_TD_MAX) {
		*why = "trust domain longer than 255 bytes";
		return -EINVAL;
	}
	/* The ID grammar decides what a trust domain is: check it as one. */
	snprintf(probe, sizeof(probe), "%s%.*s/x", ks_scheme, (int)len, in);
	if (memchr(in, '/', len) || check(probe, false, why) < 0) {
		if (memchr(in, '/', len))
			*why = "a trust domain has no path";
		return -EINVAL;
	}
	if (len + 1 > tdlen) {
		*why = "trust domain too long";
		return -EINVAL;
	}
	memcpy(td, in, len);
	td[len] = '\0';
	return 0;
}

int ks_spiffe_trust_domain(const char *id, char *td, size_t tdlen)
{
	const char *why, *start, *end;

	if (check(id, false, &why) < 0)
		return -EINVAL;
	start = id + KS_SCHEME_LEN;
	end = strchr(start, '/');
	if ((size_t)(end - start) + 1 > tdlen)
		return -ENOSPC;
	memcpy(td, start, (size_t)(end - start));
	td[end - start] = '\0';
	return 0;
}

bool ks_spiffe_in_trust_domain(const char *id, const char *td)
{
	size_t n = strlen(td);

	if (strncmp(id, ks_scheme, KS_SCHEME_LEN) != 0)
		return false;
	id += KS_SCHEME_LEN;
	return strncmp(id, td, n) == 0 && id[n] == '/';
}

bool ks_spiffe_match(const char *pattern, const char *id)
{
	const char *p = pattern, *q = id, *why;

	/* Fail closed: what is not a pattern and an ID matches nothing (the
	 * callers validate both first; this keeps it true whoever calls). */
	if (ks_spiffe_pattern_validate(pattern, &why) < 0 || ks_spiffe_validate(id, &why) < 0)
		return false;

	/* Walk both strings segment by segment; "*" eats one segment of id. */
	while (*p && *q) {
		if (p[0] == '*' && (p[1] == '/' || p[1] == '\0') && p > pattern && p[-1] == '/') {
			if (*q == '/' || *q == '\0')
				return false; /* "*" never matches an empty segment */
			while (*q && *q != '/')
				q++;
			p++;
			continue;
		}
		if (*p != *q)
			return false;
		p++;
		q++;
	}
	return *p == '\0' && *q == '\0';
}

int ks_spiffe_from_cert(X509 *leaf, char *out, size_t outlen, const char **why)
{
	GENERAL_NAMES *names;
	const char *uri = NULL;
	int nuri = 0, rc = 0, uri_len = 0;

	names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	if (!names) {
		*why = "certificate has no URI SAN (no subjectAltName at all)";
		return -ENOENT;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

		if (gn->type != GEN_URI)
			continue;
		nuri++;
		uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		uri_len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
	}
	if (nuri == 0) {
		*why = "certificate has no URI SAN (no SPIFFE ID)";
		rc = -ENOENT;
		goto cleanup;
	}
	/* X509-SVID.md §2: an SVID MUST contain exactly one URI SAN. */
	if (nuri > 1) {
		*why = "certificate has more than one URI SAN";
		rc = -EINVAL;
		goto cleanup;
	}
	/* An embedded NUL would let "spiffe://a/b\0evil" pass as spiffe://a/b. */
	if (uri_len <= 0 || (size_t)uri_len >= outlen || memchr(uri, '\0', (size_t)uri_len)) {
		*why = "URI SAN is empty, too long or has a NUL byte";
		rc = -EINVAL;
		goto cleanup;
	}
	memcpy(out, uri, (size_t)uri_len);
	out[uri_len] = '\0';
	rc = ks_spiffe_validate(out, why);
	if (rc < 0)
		out[0] = '\0';
cleanup:
	GENERAL_NAMES_free(names);
	return rc;
}
