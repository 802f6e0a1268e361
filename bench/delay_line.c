/*
 * delay_line: a fixed delay for every packet routed through a TUN device.
 *
 * The benchmark's router namespace policy-routes the packets it forwards into
 * a TUN device; this program reads each one, holds it for a fixed time, and
 * writes it back into the same device, from where the kernel routes it on to
 * its destination. TCP handshakes are delayed like any other packet, which a
 * userspace TCP relay could not do.
 *
 *   delay_line --dev NAME --delay-us N [--queue PACKETS] [--no-realtime]
 *
 * - The device must exist (`ip tuntap add dev NAME mode tun`); it is attached
 *   with IFF_TUN | IFF_NO_PI, so a read is one IP packet.
 * - Timing: CLOCK_MONOTONIC in ns, ppoll() with a ns timeout and a 1 ns timer
 *   slack (the default slack of 50 us would be most of the error). It sleeps
 *   whenever no packet is due: no busy wait.
 * - It runs at SCHED_FIFO priority 10 unless --no-realtime (or when the
 *   kernel refuses), so that busy benchmark processes do not make it late.
 * - Packets leave in arrival order, each `delay-us` after it was read. The
 *   queue holds at most `--queue` packets (default 4096); a packet that
 *   arrives when it is full is dropped and counted.
 * - Prints "ready" on stdout once attached, and one JSON line of statistics
 *   on SIGTERM or SIGINT, then exits 0: packets, bytes, drops, write errors,
 *   the deepest queue, and how late packets were written against their due
 *   time (p50, p99, max, in microseconds).
 *
 * Build: gcc -O2 -Wall -Wextra -o delay_line delay_line.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* Larger than any packet of a 1500-byte MTU; a longer one is truncated and counted. */
#define SLOT_BYTES 2048
/* Lateness histogram: 1 us buckets up to 10 ms, then one overflow bucket. */
#define LATENESS_BUCKETS 10000

struct slot {
  uint64_t due_ns;
  uint32_t len;
  unsigned char data[SLOT_BYTES];
};

static volatile sig_atomic_t stopping = 0;

static void on_signal(int signo) {
  (void)signo;
  stopping = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(void) {
  fprintf(stderr, "usage: delay_line --dev NAME --delay-us N [--queue PACKETS] [--no-realtime]\n");
}

/* The smallest lateness (us) that at least `fraction` of the packets did not exceed. */
static uint64_t percentile(const uint64_t *histogram, uint64_t total, double fraction) {
  if (total == 0) return 0;
  uint64_t rank = (uint64_t)(fraction * (double)total);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i <= LATENESS_BUCKETS; i++) {
    seen += histogram[i];
    if (seen >= rank) return (uint64_t)i;
  }
  return LATENESS_BUCKETS;
}

int main(int argc, char **argv) {
  const char *dev = NULL;
  long delay_us = -1;
  long capacity = 4096;
  int use_realtime = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dev") == 0 && i + 1 < argc) {
      dev = argv[++i];
    } else if (strcmp(argv[i], "--delay-us") == 0 && i + 1 < argc) {
      delay_us = strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--queue") == 0 && i + 1 < argc) {
      capacity = strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--no-realtime") == 0) {
      use_realtime = 0;
    } else {
      usage();
      return 2;
    }
  }
  if (dev == NULL || strlen(dev) >= IFNAMSIZ || delay_us < 0 || delay_us > 10000000 ||
      capacity < 1 || capacity > 1000000) {
    usage();
    fprintf(stderr, "delay_line: --dev (a TUN device name), --delay-us (0 to 10000000) and "
                    "--queue (1 to 1000000) are required or out of range\n");
    return 2;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "delay_line: cannot open /dev/net/tun: %s (needs root and the tun module)\n",
            strerror(errno));
    return 1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    fprintf(stderr, "delay_line: cannot attach to TUN device %s: %s\n", dev, strerror(errno));
    return 1;
  }

  /* Timers fire within 1 ns of when asked, not within the default 50 us. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  /*
   * A real-time priority, so that a due packet is not held back behind the
   * benchmark's busy processes. It sleeps between packets, so it takes no
   * more CPU than it would otherwise (and the kernel caps real-time tasks).
   */
  int realtime = 0;
  if (use_realtime) {
    struct sched_param param = {.sched_priority = 10};
    if (sched_setscheduler(0, SCHED_FIFO, &param) == 0) {
      realtime = 1;
    } else {
      fprintf(stderr, "delay_line: no SCHED_FIFO (%s); running at normal priority\n",
              strerror(errno));
    }
  }

  struct slot *queue = calloc((size_t)capacity, sizeof *queue);
  uint64_t *histogram = calloc(LATENESS_BUCKETS + 1, sizeof *histogram);
  unsigned char *scratch = malloc(SLOT_BYTES);
  if (queue == NULL || histogram == NULL || scratch == NULL) {
    fprintf(stderr, "delay_line: cannot allocate a queue of %ld packets\n", capacity);
    return 1;
  }

  /* SIGTERM and SIGINT are blocked except inside ppoll, so no read or write is interrupted. */
  sigset_t blocked, during_poll;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  sigprocmask(SIG_BLOCK, &blocked, &during_poll);
  sigdelset(&during_poll, SIGTERM);
  sigdelset(&during_poll, SIGINT);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);

  const uint64_t delay_ns = (uint64_t)delay_us * 1000u;
  uint64_t packets = 0, bytes = 0, drops = 0, truncated = 0, write_errors = 0;
  uint64_t max_queue = 0, max_lateness_ns = 0;
  long head = 0, count = 0;

  printf("ready\n");
  fflush(stdout);

  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  while (!stopping) {
    uint64_t now = now_ns();
    while (count > 0 && queue[head].due_ns <= now) {
      struct slot *s = &queue[head];
      if (write(fd, s->data, s->len) < 0) write_errors++;
      uint64_t late = now - s->due_ns;
      if (late > max_lateness_ns) max_lateness_ns = late;
      uint64_t bucket = late / 1000u;
      histogram[bucket < LATENESS_BUCKETS ? bucket : LATENESS_BUCKETS]++;
      packets++;
      bytes += s->len;
      head = (head + 1) % capacity;
      count--;
    }
    struct timespec timeout;
    if (count > 0) {
      uint64_t wait = queue[head].due_ns - now;
      timeout.tv_sec = (time_t)(wait / 1000000000u);
      timeout.tv_nsec = (long)(wait % 1000000000u);
    }
    int ready = ppoll(&pfd, 1, count > 0 ? &timeout : NULL, &during_poll);
    if (ready < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "delay_line: ppoll failed: %s\n", strerror(errno));
      return 1;
    }
    if (ready == 0 || !(pfd.revents & POLLIN)) continue;
    for (;;) {
      unsigned char *into = count < capacity ? queue[(head + count) % capacity].data : scratch;
      ssize_t n = read(fd, into, SLOT_BYTES);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        fprintf(stderr, "delay_line: read from %s failed: %s\n", dev, strerror(errno));
        return 1;
      }
      if (n == SLOT_BYTES) truncated++;
      if (count >= capacity) {
        drops++;
        continue;
      }
      struct slot *s = &queue[(head + count) % capacity];
      s->len = (uint32_t)n;
      s->due_ns = now_ns() + delay_ns;
      count++;
      if ((uint64_t)count > max_queue) max_queue = (uint64_t)count;
    }
  }

  uint64_t measured = packets;
  printf("{\"delayUs\":%ld,\"realtime\":%s,\"packets\":%llu,\"bytes\":%llu,\"drops\":%llu,\"truncated\":%llu,"
         "\"writeErrors\":%llu,\"inQueueAtExit\":%ld,\"maxQueue\":%llu,\"latenessP50Us\":%llu,"
         "\"latenessP99Us\":%llu,\"latenessMaxUs\":%.1f}\n",
         delay_us, realtime ? "true" : "false", (unsigned long long)packets, (unsigned long long)bytes,
         (unsigned long long)drops, (unsigned long long)truncated,
         (unsigned long long)write_errors, count, (unsigned long long)max_queue,
         (unsigned long long)percentile(histogram, measured, 0.5),
         (unsigned long long)percentile(histogram, measured, 0.99),
         (double)max_lateness_ns / 1000.0);
  fflush(stdout);
  return 0;
}
