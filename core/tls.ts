/**
 * HTTPS on the front: which names the server certificate must carry, the stack's own CA and
 * server certificate as @pulumi/tls inputs, and the checks a user's certificate must pass. Pure
 * apart from the clock `now` that the checks are given.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import type * as tls from "@pulumi/tls";
import { isIPv4 } from "./network";

/** The names a client may reach the front by: what the server certificate must name. */
export interface ServerNames {
    dnsNames: string[];
    ipAddresses: string[];
}

/** `mirrorHost`, every host this machine reaches the front at, and loopback by name and number. */
export function serverNames(hosts: readonly string[]): ServerNames {
    const all = [...new Set([...hosts, "127.0.0.1", "localhost"])];
    return {
        dnsNames: all.filter((host) => !isIPv4(host)),
        ipAddresses: all.filter(isIPv4),
    };
}

/**
 * The stack's keys: RSA 2048, which every client of a registry takes (terraform-provider-tls
 * `tls_private_key`, `rsa_bits` defaults to 2048).
 */
export const stackKey = { algorithm: "RSA", rsaBits: 2048 } satisfies tls.PrivateKeyArgs;

const hoursPerYear = 8766;

/**
 * The stack's CA: ten years, renewed by the `up` in its last year. A renewed CA is a new CA:
 * every client must take the new `caCertificate` (docs/team-cache.md).
 */
const stackCaValidity = {
    validityPeriodHours: 10 * hoursPerYear,
    earlyRenewalHours: hoursPerYear,
};

/**
 * The server certificate: a year, renewed by any `up` in its last 30 days (the provider plans a
 * replacement once `validity_end_time - early_renewal_hours` has passed: terraform-provider-tls
 * `modifyPlanIfCertificateReadyForRenewal`). Clients trust the CA, so a renewal asks nothing of them.
 */
export const serverCertificateValidity = {
    validityPeriodHours: hoursPerYear,
    earlyRenewalHours: 30 * 24,
};

export function stackCaCertificate(
    privateKeyPem: tls.SelfSignedCertArgs["privateKeyPem"],
    stackName: string,
) {
    return {
        privateKeyPem,
        isCaCertificate: true,
        subject: { organization: "Pullthrough", commonName: `Pullthrough CA of ${stackName}` },
        allowedUses: ["cert_signing", "crl_signing", "digital_signature"],
        ...stackCaValidity,
    } satisfies tls.SelfSignedCertArgs;
}

export function serverCertificateRequest(
    privateKeyPem: tls.CertRequestArgs["privateKeyPem"],
    mirrorHost: string,
    names: ServerNames,
) {
    return {
        privateKeyPem,
        subject: { organization: "Pullthrough", commonName: mirrorHost },
        ...names,
    } satisfies tls.CertRequestArgs;
}

export function serverCertificate(
    certRequestPem: tls.LocallySignedCertArgs["certRequestPem"],
    ca: Pick<tls.LocallySignedCertArgs, "caCertPem" | "caPrivateKeyPem">,
) {
    return {
        certRequestPem,
        ...ca,
        allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
        ...serverCertificateValidity,
    } satisfies tls.LocallySignedCertArgs;
}

/** What is wrong with a certificate a user gave, by the field it concerns. */
interface CertificateProblem {
    field: "certificate" | "key" | "ca";
    expected: string;
}

/** The certificates of a PEM bundle, leaf first; undefined when one does not parse. */
function parseCertificates(pem: string): X509Certificate[] | undefined {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (!blocks) return undefined;
    try {
        return blocks.map((block) => new X509Certificate(block));
    } catch {
        return undefined;
    }
}

/**
 * A user's certificate must parse, match its key, be valid at `now`, name `mirrorHost`, and, when
 * a CA is given, be issued by it.
 */
export function certificateProblems(
    given: { certificate: string; key: string; ca?: string },
    mirrorHost: string,
    now: Date,
): CertificateProblem[] {
    const chain = parseCertificates(given.certificate);
    if (!chain)
        return [{ field: "certificate", expected: "a PEM certificate (BEGIN CERTIFICATE)" }];
    const [leaf] = chain;
    const problems: CertificateProblem[] = [];
    let key;
    try {
        key = createPrivateKey(given.key);
    } catch {
        problems.push({ field: "key", expected: "a PEM private key (BEGIN PRIVATE KEY)" });
    }
    if (key && !leaf.checkPrivateKey(key))
        problems.push({
            field: "key",
            expected: "the private key of tls.certificate (this key does not match it)",
        });
    if (new Date(leaf.validTo) <= now)
        problems.push({
            field: "certificate",
            expected: `a certificate valid now (this one expired on ${new Date(leaf.validTo).toISOString()})`,
        });
    else if (new Date(leaf.validFrom) > now)
        problems.push({
            field: "certificate",
            expected: `a certificate valid now (this one is valid from ${new Date(leaf.validFrom).toISOString()})`,
        });
    const named = isIPv4(mirrorHost)
        ? leaf.checkIP(mirrorHost) !== undefined
        : leaf.checkHost(mirrorHost) !== undefined;
    if (!named)
        problems.push({
            field: "certificate",
            expected: `a certificate that names mirrorHost ${mirrorHost}, which nodes connect to (it names ${leaf.subjectAltName ?? "nothing"})`,
        });
    if (given.ca !== undefined) {
        const authorities = parseCertificates(given.ca);
        if (!authorities)
            problems.push({ field: "ca", expected: "a PEM certificate (BEGIN CERTIFICATE)" });
        else if (!issuedByAny(chain, authorities))
            problems.push({
                field: "ca",
                expected: "the CA that issued tls.certificate (it did not sign it)",
            });
    }
    return problems;
}

/** Whether the chain's last certificate was signed by one of `authorities`. */
function issuedByAny(chain: X509Certificate[], authorities: X509Certificate[]): boolean {
    const top = chain.at(-1)!;
    return authorities.some(
        (authority) => top.checkIssued(authority) && top.verify(authority.publicKey),
    );
}

/** When a PEM certificate stops being valid. */
export const certificateExpiry = (pem: string): Date | undefined => {
    const leaf = parseCertificates(pem)?.[0];
    return leaf ? new Date(leaf.validTo) : undefined;
};
