/* SPDX-License-Identifier: Apache-2.0 */
/* ktls-redirect's view of the system: errors, capabilities, namespaces, the kernel. */
#include "redirect/redirect_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/magic.h>
#include <linux/nsfs.h>

#include "common/log.h"

__attribute__((format(printf, 1, 2))) void ks_redir_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ks_cli_vmsg(PROG, fmt, ap);
	va_end(ap);
}

int ks_redir_caps(unsigned long long *caps)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "CapEff: %llx", caps) == 1) {
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

/*
 * Loading these program types needs CAP_BPF (or, before 5.8, CAP_SYS_ADMIN)
 * plus CAP_NET_ADMIN (kernel/bpf/syscall.c, is_net_admin_prog_type);
 * attaching to a cgroup or a netns needs CAP_NET_ADMIN too. Saying so here
 * beats the bare EPERM the first bpf() call would give.
 */

int ks_redir_open_ns(const char *path, int nstype, const char *flag, const char *hint)
{
	struct statfs st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		ks_redir_fail("%s %s: %s", flag, path, strerror(errno));
		return -ENOENT;
	}
	/* NS_GET_NSTYPE (4.11): a namespace file, and of the kind asked for. */
	if (fstatfs(fd, &st) < 0 || st.f_type != NSFS_MAGIC || ioctl(fd, NS_GET_NSTYPE) != nstype) {
		ks_redir_fail("%s %s: %s", flag, path, hint);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

int ks_redir_open_netns(const char *path)
{
	return ks_redir_open_ns(
	    path, CLONE_NEWNET, "--netns",
	    "not a network namespace (use /proc/PID/ns/net or /run/netns/NAME)");
}

void ks_redir_kernel_release(char *buf, size_t buflen)
{
	struct utsname u;

	snprintf(buf, buflen, "%s", uname(&u) == 0 ? u.release : "unknown");
}

/*
 * Each hook the programs need, probed by loading a trivial program: a
 * kernel without one gets its name and first version in the message, not a
 * verifier log.
 */
