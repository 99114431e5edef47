/**
 * A test stand-in for the TLS provider (@pulumi/tls, bridged from hashicorp/terraform-provider-tls,
 * `internal/provider`), for the four resources the stack uses, making real keys and certificates
 * (node:crypto keys, node-forge certificates) so that real clients can be pointed at them:
 *
 * - `PrivateKey`: RSA of `rsaBits` (2048 by default) → `privateKeyPem`, `publicKeyPem`;
 * - `SelfSignedCert`, `LocallySignedCert`: a 128-bit random serial, valid from now for
 *   `validityPeriodHours`, key usages from `allowedUses`, `isCaCertificate` → basic constraints
 *   CA and a subject key id (`createCertificate`, common_cert.go) → `certPem`,
 *   `validityStartTime`, `validityEndTime` (RFC 3339), `readyForRenewal: false`;
 * - `CertRequest`: the subject, `dnsNames` and `ipAddresses` → `certRequestPem`.
 *
 * Every attribute of these resources requires replacement. A certificate whose
 * `validityEndTime - earlyRenewalHours` has passed is planned for replacement on the next `up`
 * whatever its inputs (`modifyPlanIfCertificateReadyForRenewal`, common_cert.go), which is how a
 * stack renews it.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import forge from "node-forge";
import {
    serverCertificate,
    serverCertificateRequest,
    serverCertificateValidity,
    serverNames,
    stackCaCertificate,
    stackKey,
} from "../core/tls";
import type { ProviderStandIn } from "./pulumi-engine";

const tlsTypePrefix = "tls:index/";
const certificateTypes = [
    "tls:index/selfSignedCert:SelfSignedCert",
    "tls:index/locallySignedCert:LocallySignedCert",
];

/** `allowed_uses` as forge's keyUsage and extKeyUsage fields (common_cert.go keyUsages). */
const keyUsages: Record<string, [string, string]> = {
    digital_signature: ["keyUsage", "digitalSignature"],
    key_encipherment: ["keyUsage", "keyEncipherment"],
    cert_signing: ["keyUsage", "keyCertSign"],
    crl_signing: ["keyUsage", "cRLSign"],
    server_auth: ["extKeyUsage", "serverAuth"],
    client_auth: ["extKeyUsage", "clientAuth"],
};

export class TlsProviderStandIn implements ProviderStandIn {
    /** The clock the provider plans renewals by; a test may move it. */
    now = () => new Date();
    private next = 0;

    handles(type: string): boolean {
        return type.startsWith(tlsTypePrefix);
    }

    replaceKeys(): "all" {
        return "all";
    }

    deletesBeforeReplace(): boolean {
        return false;
    }

    plannedReplacement(type: string, state: Record<string, any>): string | undefined {
        if (!certificateTypes.includes(type) || !state.validityEndTime) return undefined;
        const renewFrom =
            new Date(state.validityEndTime).getTime() - (state.earlyRenewalHours ?? 0) * 3600_000;
        return this.now().getTime() >= renewFrom ? "readyForRenewal" : undefined;
    }

    async create(
        type: string,
        inputs: Record<string, any>,
    ): Promise<{ id: string; state: Record<string, any> }> {
        const id = `tls-${this.next++}`;
        switch (type) {
            case "tls:index/privateKey:PrivateKey":
                return { id, state: { ...inputs, ...privateKey(inputs) } };
            case "tls:index/certRequest:CertRequest":
                return { id, state: { ...inputs, certRequestPem: certRequest(inputs) } };
            case "tls:index/selfSignedCert:SelfSignedCert":
            case "tls:index/locallySignedCert:LocallySignedCert":
                return { id, state: { ...inputs, ...this.certificate(type, inputs) } };
            default:
                throw new Error(`the TLS provider stand-in does not model ${type}`);
        }
    }

    async update(type: string): Promise<void> {
        throw new Error(`every input of ${type} replaces it; the provider never updates one`);
    }

    async delete(): Promise<void> {}

    private certificate(type: string, inputs: Record<string, any>) {
        const cert = forge.pki.createCertificate();
        const selfSigned = type === certificateTypes[0];
        const key = forge.pki.privateKeyFromPem(
            selfSigned ? inputs.privateKeyPem : inputs.caPrivateKeyPem,
        );
        let subjectAttributes: forge.pki.CertificateField[];
        let extensions: any[] = [];
        if (selfSigned) {
            cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
            subjectAttributes = subjectFields(inputs.subject);
            cert.setIssuer(subjectAttributes);
        } else {
            const request = forge.pki.certificationRequestFromPem(inputs.certRequestPem);
            cert.publicKey = request.publicKey!;
            subjectAttributes = request.subject.attributes;
            const ca = forge.pki.certificateFromPem(inputs.caCertPem);
            cert.setIssuer(ca.subject.attributes);
            extensions = (request.getAttribute({ name: "extensionRequest" }) as any)?.extensions;
        }
        cert.setSubject(subjectAttributes);
        cert.serialNumber = serialNumber();
        const start = this.now();
        const end = new Date(start.getTime() + inputs.validityPeriodHours * 3600_000);
        cert.validity.notBefore = start;
        cert.validity.notAfter = end;
        const usage: Record<string, Record<string, boolean>> = { keyUsage: {}, extKeyUsage: {} };
        for (const use of inputs.allowedUses ?? []) {
            const [extension, field] = keyUsages[use] ?? [];
            if (extension) usage[extension][field] = true;
        }
        cert.setExtensions([
            ...(inputs.isCaCertificate
                ? [{ name: "basicConstraints", cA: true }, { name: "subjectKeyIdentifier" }]
                : []),
            ...(Object.keys(usage.keyUsage).length > 0
                ? [{ name: "keyUsage", ...usage.keyUsage }]
                : []),
            ...(Object.keys(usage.extKeyUsage).length > 0
                ? [{ name: "extKeyUsage", ...usage.extKeyUsage }]
                : []),
            ...extensions,
        ]);
        cert.sign(key, forge.md.sha256.create());
        return {
            certPem: forge.pki.certificateToPem(cert),
            validityStartTime: start.toISOString(),
            validityEndTime: end.toISOString(),
            readyForRenewal: false,
        };
    }
}

function privateKey(inputs: Record<string, any>) {
    if (inputs.algorithm !== "RSA")
        throw new Error(`the TLS provider stand-in makes RSA keys only, not ${inputs.algorithm}`);
    const { privateKey, publicKey } = generateKeyPairSync("rsa", {
        modulusLength: inputs.rsaBits ?? 2048,
        privateKeyEncoding: { type: "pkcs1", format: "pem" },
        publicKeyEncoding: { type: "spki", format: "pem" },
    });
    return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

function certRequest(inputs: Record<string, any>): string {
    const request = forge.pki.createCertificationRequest();
    const key = forge.pki.privateKeyFromPem(inputs.privateKeyPem);
    request.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    request.setSubject(subjectFields(inputs.subject));
    const altNames = [
        ...(inputs.dnsNames ?? []).map((value: string) => ({ type: 2, value })),
        ...(inputs.ipAddresses ?? []).map((ip: string) => ({ type: 7, ip })),
    ];
    if (altNames.length > 0)
        request.setAttributes([
            { name: "extensionRequest", extensions: [{ name: "subjectAltName", altNames }] },
        ]);
    request.sign(key, forge.md.sha256.create());
    return forge.pki.certificationRequestToPem(request);
}

function subjectFields(subject: Record<string, string> = {}): forge.pki.CertificateField[] {
    return [
        ...(subject.organization
            ? [{ name: "organizationName", value: subject.organization }]
            : []),
        ...(subject.commonName ? [{ name: "commonName", value: subject.commonName }] : []),
    ];
}

/**
 * A CA and a server certificate for `hosts` (the first as its subject), made by this stand-in as
 * the stack declares them, issued at `from`, the server's valid for `hours` (the stack's year by
 * default): what the tests and the bench serve and check.
 */
export async function stackCertificates(
    hosts: string[],
    {
        from = new Date(),
        hours = serverCertificateValidity.validityPeriodHours,
    }: { from?: Date; hours?: number } = {},
): Promise<{ ca: string; key: string; certificate: string }> {
    const tls = new TlsProviderStandIn();
    tls.now = () => from;
    const make = async (type: string, inputs: Record<string, unknown>) =>
        (await tls.create(`tls:index/${type}`, inputs)).state;
    const caKey = (await make("privateKey:PrivateKey", stackKey)).privateKeyPem;
    const ca = (await make("selfSignedCert:SelfSignedCert", stackCaCertificate(caKey, "tests")))
        .certPem;
    const key = (await make("privateKey:PrivateKey", stackKey)).privateKeyPem;
    const request = await make(
        "certRequest:CertRequest",
        serverCertificateRequest(key, hosts[0], serverNames(hosts)),
    );
    const certificate = await make("locallySignedCert:LocallySignedCert", {
        ...serverCertificate(request.certRequestPem, { caCertPem: ca, caPrivateKeyPem: caKey }),
        validityPeriodHours: hours,
    });
    return { ca, key, certificate: certificate.certPem };
}

/**
 * A random positive 128-bit serial in hex, encoded as DER wants an INTEGER: a leading zero octet
 * only before one whose high bit is set. OpenSSL refuses `00 00 7f…` ("illegal padding"), which a
 * fixed `00` prefix gave about once in 512 certificates.
 */
function serialNumber(): string {
    const hex =
        randomBytes(16)
            .toString("hex")
            .replace(/^(00)+/, "") || "01";
    return Number.parseInt(hex.slice(0, 2), 16) >= 0x80 ? `00${hex}` : hex;
}
