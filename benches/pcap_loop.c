/*
 * pcap_loop.c: the floor benches/analyze.sh measures `socklab analyze` against: the
 * least work a program can do to read every packet of a capture file through libpcap.
 *
 *   pcap_loop FILE     pcap_open_offline, then pcap_next_ex until the end, counting
 *                      packets and bytes; prints "PACKETS packets, BYTES bytes".
 *
 * It decodes nothing, so an analyzer within 2x of it spends at most as long on its
 * analysis as libpcap spends reading.
 *
 * Build: gcc -O2 -o pcap_loop benches/pcap_loop.c -lpcap
 */
#include <pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: pcap_loop FILE\n");
        return 2;
    }
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *pcap = pcap_open_offline(argv[1], errbuf);
    if (pcap == NULL) {
        fprintf(stderr, "pcap_loop: cannot open %s: %s\n", argv[1], errbuf);
        return 2;
    }
    struct pcap_pkthdr *header;
    const u_char *data;
    unsigned long long packets = 0, bytes = 0;
    int status;
    while ((status = pcap_next_ex(pcap, &header, &data)) == 1) {
        packets++;
        bytes += header->caplen;
    }
    if (status == PCAP_ERROR) {
        fprintf(stderr, "pcap_loop: %s: %s\n", argv[1], pcap_geterr(pcap));
        pcap_close(pcap);
        return 2;
    }
    pcap_close(pcap);
    printf("%llu packets, %llu bytes\n", packets, bytes);
    return 0;
}
