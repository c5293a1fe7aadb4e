/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests that depend on netfilter (conntrack, nat rules) run in a
 * network namespace of their own, so the host's rules do not decide the
 * outcome and nothing the test adds outlives it: the namespace goes when
 * the test process exits, whatever happened (include after cmocka.h).
 */
#ifndef KS_TEST_NETNS_H
#define KS_TEST_NETNS_H

#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Moves this process into a new network namespace with lo up (a new one
 * has only lo, down). Each call gives a fresh one; the previous goes once
 * nothing holds it. false, with the reason in why, when it cannot.
 */
static inline bool ks_test_fresh_netns(char *why, size_t len)
{
	struct ifreq ifr = {0};
	int fd, rc = 0;

	if (unshare(CLONE_NEWNET) < 0) {
		snprintf(why, len, "unshare(CLONE_NEWNET): %s (needs root or CAP_SYS_ADMIN)",
			 strerror(errno));
		return false;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail_msg("socket: %s", strerror(errno));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		rc = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (rc == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		rc = -errno;
	close(fd);
	if (rc < 0)
		fail_msg("bringing lo up in the new network namespace: %s", strerror(-rc));
	return true;
}

/*
 * Runs TOOL ARGS (iptables or ip6tables, found on PATH) in this process's
 * network namespace. false, with the reason in why, if TOOL is not
 * installed; the test fails if it is and the command fails.
 */
static inline bool ks_test_xtables(char *why, size_t len, const char *tool, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline bool ks_test_xtables(char *why, size_t len, const char *tool, const char *fmt, ...)
{
	char cmd[1024], args[768];
	va_list ap;

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	if (system(cmd) != 0) {
		snprintf(why, len, "%s is not installed", tool);
		return false;
	}
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	/* -w: iptables-legacy's lock is shared by every namespace on the host. */
	snprintf(cmd, sizeof(cmd), "%s -w 10 %s", tool, args);
	if (system(cmd) != 0)
		fail_msg("command failed: %s", cmd);
	return true;
}

/* cmocka's skip(), with the reason printed first. */
#define KS_TEST_SKIP(why)                                                                          \
	do {                                                                                       \
		print_message("SKIP: %s\n", (why));                                                \
		skip();                                                                            \
	} while (0)

#endif
