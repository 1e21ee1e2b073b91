/* TCP benchmark of bench/net (issue 7), built statically by the host's gcc at each run.
 *
 *   netbench server PORT
 *       serves connections forever, one thread each. A connection's first byte picks its job:
 *       'S' sink (read until the peer closes), 'G' source (send until the peer closes),
 *       'R' request-response (echo each 1-byte message).
 *   netbench client HOST PORT send|recv|rr SECONDS [STREAMS]
 *       runs the job for SECONDS over STREAMS connections in parallel (default 1) and prints
 *       `NETBENCH job=... streams=N secs=S bytes=B mbps=M` (10^6 bit/s) or, for rr,
 *       `NETBENCH job=rr ... trans=T tps=X` (round trips per second).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (128 * 1024)
#define MAX_STREAMS 16

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "NETBENCH-ERROR %s: %s\n", what, strerror(errno));
  exit(1);
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Server side of one connection. */
static void *serve(void *arg) {
  int fd = (int)(long)arg;
  static char zeros[BUF];
  char *buf = malloc(BUF);
  char job;
  if (!buf || read(fd, &job, 1) != 1) goto out;
  if (job == 'S') {
    while (read(fd, buf, BUF) > 0) {
    }
  } else if (job == 'G') {
    while (write(fd, zeros, BUF) > 0) {
    }
  } else if (job == 'R') {
    nodelay(fd);
    char b;
    while (read(fd, &b, 1) == 1 && write(fd, &b, 1) == 1) {
    }
  }
out:
  free(buf);
  close(fd);
  return NULL;
}

static _Noreturn void server(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (s < 0) die("socket");
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) die("bind/listen");
  printf("NETBENCH-LISTENING %d\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    pthread_t t;
    if (c < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    if (pthread_create(&t, NULL, serve, (void *)(long)c)) close(c);
    else pthread_detach(t);
  }
}

struct stream {
  const char *host;
  int port;
  char job;
  double secs;
  long long bytes; /* or round trips */
  int failed;
};

static int dial(const char *host, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    errno = EINVAL;
    return -1;
  }
  /* The server may still be starting: retry for 60 s. */
  for (int i = 0; i < 600; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    close(fd);
    usleep(100000);
  }
  return -1;
}

static void *run_stream(void *arg) {
  struct stream *st = arg;
  static char zeros[BUF];
  char *buf = malloc(BUF);
  int fd = dial(st->host, st->port);
  if (fd < 0 || !buf || write(fd, &st->job, 1) != 1) {
    st->failed = 1;
    goto out;
  }
  double end = now() + st->secs;
  if (st->job == 'S') {
    while (now() < end) {
      ssize_t n = write(fd, zeros, BUF);
      if (n <= 0) { st->failed = 1; break; }
      st->bytes += n;
    }
  } else if (st->job == 'G') {
    while (now() < end) {
      ssize_t n = read(fd, buf, BUF);
      if (n <= 0) { st->failed = 1; break; }
      st->bytes += n;
    }
  } else {
    nodelay(fd);
    char b = 'x';
    while (now() < end) {
      if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) { st->failed = 1; break; }
      st->bytes++;
    }
  }
out:
  if (fd >= 0) close(fd);
  free(buf);
  return NULL;
}

static int client(const char *host, int port, const char *job, double secs, int streams) {
  struct stream st[MAX_STREAMS];
  pthread_t t[MAX_STREAMS];
  char j = !strcmp(job, "send") ? 'S' : !strcmp(job, "recv") ? 'G' : !strcmp(job, "rr") ? 'R' : 0;
  if (!j || streams < 1 || streams > MAX_STREAMS || secs <= 0) {
    fprintf(stderr, "NETBENCH-ERROR bad arguments\n");
    return 2;
  }
  double start = now();
  for (int i = 0; i < streams; i++) {
    st[i] = (struct stream){.host = host, .port = port, .job = j, .secs = secs};
    if (pthread_create(&t[i], NULL, run_stream, &st[i])) die("pthread_create");
  }
  long long total = 0;
  int failed = 0;
  for (int i = 0; i < streams; i++) {
    pthread_join(t[i], NULL);
    total += st[i].bytes;
    failed |= st[i].failed;
  }
  double el = now() - start;
  if (j == 'R')
    printf("NETBENCH job=rr streams=%d secs=%.2f trans=%lld tps=%.0f failed=%d\n", streams, el,
           total, total / el, failed);
  else
    printf("NETBENCH job=%s streams=%d secs=%.2f bytes=%lld mbps=%.1f failed=%d\n", job, streams,
           el, total, total * 8 / el / 1e6, failed);
  return failed;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* A peer that goes away is the normal end of a job, not a reason to die. */
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && !strcmp(argv[1], "server")) server(atoi(argv[2]));
  if ((argc == 6 || argc == 7) && !strcmp(argv[1], "client"))
    return client(argv[2], atoi(argv[3]), argv[4], atof(argv[5]), argc == 7 ? atoi(argv[6]) : 1);
  fprintf(stderr,
          "usage: netbench server PORT | netbench client HOST PORT send|recv|rr SECONDS [STREAMS]\n");
  return 2;
}
