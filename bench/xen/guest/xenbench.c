/*
 * xenbench: measures, from inside a Xen HVM guest, what the hypervisor's Xen interface costs.
 *
 *   hypercall:  N x xen_version(XENVER_version) through /dev/xen/privcmd. KVM answers this one
 *               in the kernel when the VMM told it the Xen version (KVM_XEN_ATTR_TYPE_XEN_VERSION).
 *   hypercall_vmm: N x xen_version(XENVER_get_features), which KVM always hands to the VMM
 *               (KVM_EXIT_XEN), so it measures the VMM's own hypercall path.
 *   baselines:  the same number of getppid() syscalls and of no-op ioctls on the privcmd file
 *               (an unknown command, refused by the driver), so the hypercall figures can be read
 *               against the guest's own syscall overhead. Nothing is subtracted.
 *               All four are timed in 20 batches; the figure is the median batch's ns per call.
 *   evtchn:     a loopback interdomain event channel inside the guest (an unbound port for
 *               DOMID_SELF, then bind_interdomain to it through /dev/xen/evtchn). One round trip
 *               is: notify end A, wait for and read end B's event, unmask B, notify B, wait for
 *               and read A's event, unmask A. Each notify is an EVTCHNOP_send hypercall that the
 *               VMM turns into an upcall into the guest, so a round trip is two
 *               guest -> hypervisor -> guest trips.
 *
 * Output: lines starting with "XENBENCH " (key=value), and "XENBENCH-ERROR ..." on failure
 * (exit status 1). Usage: xenbench [HYPERCALLS [ROUNDTRIPS]]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
/* <xen/evtchn.h> uses the kernel's domid_t, which no userspace header defines. */
typedef uint16_t domid_t;
#include <xen/evtchn.h>

/* Linux's privcmd ABI (include/uapi/xen/privcmd.h); its header pulls in kernel-only headers. */
struct xb_privcmd_hypercall {
	uint64_t op;
	uint64_t arg[5];
};
#define XB_IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(struct xb_privcmd_hypercall))
/* An ioctl number privcmd does not know: the driver refuses it without touching the hypervisor. */
#define XB_IOCTL_NOP _IOC(_IOC_NONE, 'P', 0xfe, 0)

/* Xen's public ABI (xen/include/public/xen.h, version.h). */
#define HYPERVISOR_xen_version 17
#define XENVER_version 0
#define XENVER_get_features 6
#define DOMID_SELF 0x7ff0u

struct xen_feature_info {
	uint32_t submap_idx;
	uint32_t submap;
};

static void fail(const char *what)
{
	printf("XENBENCH-ERROR %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long hypercall(int fd, struct xb_privcmd_hypercall *h)
{
	return ioctl(fd, XB_IOCTL_PRIVCMD_HYPERCALL, h);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/*
 * Calls op(ctx) n times in BATCHES batches and prints `key`=the median of the batches' ns per
 * call (a burst of load on the host spoils a batch, not the figure), then the overall mean.
 */
#define BATCHES 20
static void time_op(const char *key, long n, int (*op)(void *), void *ctx)
{
	double per_call[BATCHES];
	long per_batch = n / BATCHES > 0 ? n / BATCHES : 1;
	uint64_t total = 0;
	for (int b = 0; b < BATCHES; b++) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < per_batch; i++) {
			if (op(ctx) < 0)
				fail(key);
		}
		uint64_t dt = now_ns() - t0;
		total += dt;
		per_call[b] = (double)dt / (double)per_batch;
	}
	qsort(per_call, BATCHES, sizeof(per_call[0]), cmp_double);
	printf("XENBENCH %s=%.0f mean=%.0f n=%ld\n", key, (per_call[BATCHES / 2 - 1] + per_call[BATCHES / 2]) / 2,
	       (double)total / (double)(per_batch * BATCHES), per_batch * BATCHES);
}

struct hcall_ctx {
	int fd;
	struct xb_privcmd_hypercall h;
};

static int op_hypercall(void *p)
{
	struct hcall_ctx *c = p;
	return hypercall(c->fd, &c->h) < 0 ? -1 : 0;
}

static int op_getppid(void *p)
{
	(void)p;
	syscall(SYS_getppid);
	return 0;
}

static int op_refused_ioctl(void *p)
{
	/* Refused on purpose; only its cost counts. */
	ioctl(*(int *)p, XB_IOCTL_NOP, 0);
	return 0;
}

/* Times xen_version(cmd, arg) under `key`. */
static void time_xen_version(int fd, const char *key, uint64_t cmd, void *arg, long n)
{
	struct hcall_ctx c = { .fd = fd, .h = { .op = HYPERVISOR_xen_version, .arg = { cmd, (uint64_t)(uintptr_t)arg } } };
	long r = hypercall(fd, &c.h);
	if (r < 0)
		fail(key);
	if (cmd == XENVER_version)
		printf("XENBENCH xen_version=%ld.%ld\n", r >> 16, r & 0xffff);
	time_op(key, n, op_hypercall, &c);
}

static void time_baselines(int fd, long n)
{
	time_op("syscall_ns", n, op_getppid, NULL);
	if (ioctl(fd, XB_IOCTL_NOP, 0) == 0) {
		errno = 0;
		fail("the no-op ioctl on privcmd unexpectedly succeeded");
	}
	time_op("ioctl_ns", n, op_refused_ioctl, &fd);
}

/* Waits (at most 2 s) for `want` on the evtchn file, then unmasks it. */
static void wait_port(int fd, uint32_t want)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 2000);
		if (r < 0)
			fail("poll on /dev/xen/evtchn");
		if (r == 0) {
			printf("XENBENCH-ERROR no event on port %u within 2 s (lost event)\n", want);
			fflush(stdout);
			exit(1);
		}
		uint32_t ports[8];
		ssize_t got = read(fd, ports, sizeof(ports));
		if (got < 0)
			fail("read /dev/xen/evtchn");
		int seen = 0;
		for (ssize_t i = 0; i < got / 4; i++)
			seen |= ports[i] == want;
		/* Writing ports back unmasks them; unexpected ones too, so nothing stays masked. */
		if (write(fd, ports, (size_t)got) != got)
			fail("write (unmask) /dev/xen/evtchn");
		if (seen)
			return;
	}
}

/* Reads whatever is already pending (Xen raises a freshly bound interdomain port). */
static void drain(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 100) > 0) {
		uint32_t ports[8];
		ssize_t got = read(fd, ports, sizeof(ports));
		if (got <= 0)
			return;
		if (write(fd, ports, (size_t)got) != got)
			fail("write (unmask) /dev/xen/evtchn");
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static void notify(int fd, uint32_t port)
{
	struct ioctl_evtchn_notify n = { .port = port };
	if (ioctl(fd, IOCTL_EVTCHN_NOTIFY, &n) < 0)
		fail("IOCTL_EVTCHN_NOTIFY");
}

static void time_evtchn(long n)
{
	int fd = open("/dev/xen/evtchn", O_RDWR);
	if (fd < 0)
		fail("open /dev/xen/evtchn");
	struct ioctl_evtchn_bind_unbound_port u = { .remote_domain = DOMID_SELF };
	int a = ioctl(fd, IOCTL_EVTCHN_BIND_UNBOUND_PORT, &u);
	if (a < 0)
		fail("IOCTL_EVTCHN_BIND_UNBOUND_PORT (remote DOMID_SELF)");
	struct ioctl_evtchn_bind_interdomain bi = { .remote_domain = DOMID_SELF, .remote_port = (unsigned)a };
	int b = ioctl(fd, IOCTL_EVTCHN_BIND_INTERDOMAIN, &bi);
	if (b < 0)
		fail("IOCTL_EVTCHN_BIND_INTERDOMAIN (loopback to DOMID_SELF)");
	printf("XENBENCH evtchn_ports=%d,%d\n", a, b);
	drain(fd);

	uint64_t *rtt = malloc(sizeof(*rtt) * (size_t)n);
	if (!rtt)
		fail("malloc");
	for (long i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		notify(fd, (uint32_t)a);
		wait_port(fd, (uint32_t)b);
		notify(fd, (uint32_t)b);
		wait_port(fd, (uint32_t)a);
		rtt[i] = now_ns() - t0;
	}
	qsort(rtt, (size_t)n, sizeof(*rtt), cmp_u64);
	double sum = 0;
	for (long i = 0; i < n; i++)
		sum += (double)rtt[i];
	long p99 = (n * 99 + 99) / 100 - 1;
	printf("XENBENCH evtchn_rtt_us_median=%.1f p99=%.1f mean=%.1f n=%ld\n", (double)rtt[n / 2] / 1000.0,
	       (double)rtt[p99] / 1000.0, sum / (double)n / 1000.0, n);
	free(rtt);
	close(fd);
}

static long arg_count(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v <= 0) {
		printf("XENBENCH-ERROR %s must be a positive number, not '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	long hcalls = argc > 1 ? arg_count(argv[1], "HYPERCALLS") : 100000;
	long rtts = argc > 2 ? arg_count(argv[2], "ROUNDTRIPS") : 10000;
	setvbuf(stdout, NULL, _IOLBF, 0);

	int pfd = open("/dev/xen/privcmd", O_RDWR);
	if (pfd < 0)
		fail("open /dev/xen/privcmd");
	time_baselines(pfd, hcalls);
	time_xen_version(pfd, "hypercall_ns", XENVER_version, NULL, hcalls);
	struct xen_feature_info fi = { 0 };
	time_xen_version(pfd, "hypercall_vmm_ns", XENVER_get_features, &fi, hcalls);
	printf("XENBENCH hypercalls=%ld\n", hcalls);
	close(pfd);

	time_evtchn(rtts);
	printf("XENBENCH done\n");
	return 0;
}
