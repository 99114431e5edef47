/**
 * IPv4 addresses and networks as the settings take them, and the arithmetic on them, with
 * ipaddr.js. Only dotted decimal is accepted (`10.5.0.1`, never `0x0a.5.0.1` or `010.5.0.1`),
 * as Docker and Talos write addresses, although ipaddr.js would parse the other forms too.
 */
import ipaddr from "ipaddr.js";

export const isIPv4 = (value: string) => ipaddr.IPv4.isValidFourPartDecimal(value);

/** `10.5.0.0/24`: a dotted-decimal address and a prefix length written without leading zeros. */
export function isIPv4Cidr(value: string): boolean {
    const [address, prefix, ...rest] = value.split("/");
    return (
        rest.length === 0 && isIPv4(address) && /^(?:[0-9]|[12][0-9]|3[0-2])$/.test(prefix ?? "")
    );
}

/** A cluster network: a /8 or narrower, so never "everything" (0.0.0.0/0). */
export const isClusterCidr = (value: string) => isIPv4Cidr(value) && prefixLength(value) >= 8;

const prefixLength = (cidr: string) => ipaddr.IPv4.parseCIDR(cidr)[1];

/** How many addresses a network holds, its own and its broadcast address included. */
export const networkSize = (cidr: string) => 2 ** (32 - prefixLength(cidr));

/** The address at `offset` in an IPv4 network: 1 is Talos's gateway, 2 its first node. */
export function cidrAddress(cidr: string, offset: number): string {
    const network = ipaddr.IPv4.networkAddressFromCIDR(cidr).toByteArray();
    const value = network.reduce((sum, octet) => sum * 256 + octet, 0) + offset;
    const octets = [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256);
    return new ipaddr.IPv4(octets).toString();
}

/** Loopback or unspecified (`127.0.0.1`, `::1`, `0.0.0.0`, `::`, `::ffff:127.0.0.1`): not elsewhere. */
export function isLoopbackAddress(address: string): boolean {
    if (!ipaddr.isValid(address)) return false;
    const parsed = ipaddr.process(address);
    return ["loopback", "unspecified"].includes(parsed.range());
}

/** An address only this machine reaches (`127.0.0.1`): what binds there never meets a network. */
export const isLoopbackOnly = (address: string) =>
    ipaddr.isValid(address) && ipaddr.process(address).range() === "loopback";
