/* benches/relay_floor.c: the plainest UDP relay there is, the floor for benches/proxy.sh.
 *
 *   gcc -O2 -o relay_floor benches/relay_floor.c
 *   ./relay_floor LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)
 *
 * What socklab proxy and socat do, minus everything else: each client address gets its
 * own socket connected to the upstream (so replies find their way back), and one
 * poll() loop moves datagrams: recvfrom on the listening socket -> send on the client's
 * upstream socket; recv on an upstream socket -> sendto the client (each ready socket
 * drained before the next poll). No impairment, no timers, no expiry; at most
 * MAX_CLIENTS clients (the benchmark uses 50). Whatever a relay costs beyond this loop
 * is the relay's own; what this loop costs, every userspace relay pays (two more
 * wake-ups and a handful of system calls per round trip).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MAX_DATAGRAM 65536
#define BATCH 64

static struct sockaddr_in clients[MAX_CLIENTS];
static struct pollfd fds[MAX_CLIENTS + 1]; /* fds[0]: listening; fds[1 + i]: client i */
static int nclients;

static int find_or_add(const struct sockaddr_in *from, const struct sockaddr_in *upstream) {
    for (int i = 0; i < nclients; i++)
        if (clients[i].sin_port == from->sin_port && clients[i].sin_addr.s_addr == from->sin_addr.s_addr)
            return i;
    if (nclients == MAX_CLIENTS)
        return -1;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)upstream, sizeof *upstream) < 0) {
        perror("upstream socket");
        exit(2);
    }
    clients[nclients] = *from;
    fds[1 + nclients].fd = fd;
    fds[1 + nclients].events = POLLIN;
    return nclients++;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in listen_addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    struct sockaddr_in upstream = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, "127.0.0.1", &listen_addr.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &upstream.sin_addr);
    int listener = socket(AF_INET, SOCK_DGRAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0) {
        perror("bind");
        return 2;
    }
    fds[0].fd = listener;
    fds[0].events = POLLIN;
    static char buffer[MAX_DATAGRAM];
    for (;;) {
        if (poll(fds, 1 + nclients, -1) < 0) {
            perror("poll");
            return 2;
        }
        /* Drain what is there (up to BATCH per socket) before polling again: one poll()
         * over 51 sockets per datagram would cost more than the relaying. */
        for (int k = 0; k < BATCH && (fds[0].revents & POLLIN); k++) {
            struct sockaddr_in from;
            socklen_t len = sizeof from;
            ssize_t n = recvfrom(listener, buffer, sizeof buffer, MSG_DONTWAIT,
                                 (struct sockaddr *)&from, &len);
            if (n < 0)
                break;
            int i = find_or_add(&from, &upstream);
            if (i >= 0)
                send(fds[1 + i].fd, buffer, n, 0); /* an ICMP error from earlier: ignore */
        }
        for (int i = 0; i < nclients; i++) {
            if (!(fds[1 + i].revents & (POLLIN | POLLERR)))
                continue;
            for (int k = 0; k < BATCH; k++) {
                ssize_t n = recv(fds[1 + i].fd, buffer, sizeof buffer, MSG_DONTWAIT);
                if (n < 0)
                    break;
                sendto(listener, buffer, n, 0, (struct sockaddr *)&clients[i], sizeof clients[i]);
            }
        }
    }
}
