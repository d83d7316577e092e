/*
 * echo_floor.c: the "floor" echo servers benches/echo.sh measures socklab against.
 *
 * The least work an echo server can do on Linux, written the plainest way so nobody
 * can say the floor was slowed down by cleverness or by a runtime:
 *
 *   echo_floor tcp PORT   thread per connection: accept, TCP_NODELAY, then blocking
 *                         read() and write() of whatever arrived, until EOF.
 *   echo_floor udp PORT   one blocking recvfrom()/sendto() loop on one socket.
 *
 * Both bind 127.0.0.1 only and print "listening on 127.0.0.1:PORT" once ready.
 *
 * Build: gcc -O2 -pthread -o echo_floor benches/echo_floor.c
 */
#define _GNU_SOURCE
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
#include <unistd.h>

/* As socklab's TCP server: a read returns what is buffered, up to this much. */
#define READ_BUFFER (16 * 1024)
/* One more than the largest IPv4 UDP payload, so no datagram is truncated. */
#define DATAGRAM_BUFFER 65508

static void die(const char *what) {
  perror(what);
  exit(2);
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

/* Writes all of buf, however many write() calls that takes. */
static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void *serve_connection(void *arg) {
  int fd = (int)(long)arg;
  char buf[READ_BUFFER];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (write_all(fd, buf, (size_t)n) < 0) break;
  }
  close(fd);
  return NULL;
}

static void serve_tcp(int port) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = loopback(port);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(listener, 1024) < 0) die("listen");
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (;;) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept");
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t thread;
    if (pthread_create(&thread, &attr, serve_connection, (void *)(long)fd) != 0) {
      close(fd);
    }
  }
}

static void serve_udp(int port) {
  int sock = socket(AF_INET, SOCK_DGRAM, 0);
  if (sock < 0) die("socket");
  struct sockaddr_in addr = loopback(port);
  if (bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);

  static char buf[DATAGRAM_BUFFER];
  for (;;) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = recvfrom(sock, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
    if (n < 0) continue; /* EINTR, or an ICMP error queued by an earlier send */
    sendto(sock, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len);
  }
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "tcp") != 0 && strcmp(argv[1], "udp") != 0)) {
    fprintf(stderr, "usage: %s tcp|udp PORT\n", argv[0]);
    return 2;
  }
  /* A client that resets its connection must not kill the server with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  int port = atoi(argv[2]);
  if (strcmp(argv[1], "tcp") == 0) {
    serve_tcp(port);
  } else {
    serve_udp(port);
  }
  return 0;
}
