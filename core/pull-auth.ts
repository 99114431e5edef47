/**
 * Pull credentials: who may pull from the front. nginx checks each request's Basic credentials
 * against an htpasswd file of bcrypt hashes (`auth_basic_user_file`; nginx hands the hash to the
 * system's crypt(): libxcrypt in the Debian nginx image, which the tests run, takes `$2b$`). Pure.
 */
import { createHash } from "node:crypto";
import bcrypt from "bcryptjs";
import type { Credential } from "../mirrors";
import type { StackIdentity } from "./plan";

/**
 * bcrypt's cost. nginx runs crypt() on every request, inside its event loop: glibc's took 0.8 ms
 * at cost 4 and 2.8 ms at 6 here (44 ms at 10), so 5 costs between the two. The file never leaves
 * the front container, so the cost only slows an attacker who already holds it.
 */
const bcryptCost = 5;

/** bcrypt's base-64 alphabet, in which a salt is written. */
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * A salt of its own per stack and user, the same on every `up`: a random one would change the
 * file, and with it the front, on every `up`.
 */
function saltFor(identity: StackIdentity, username: string): string {
    const seed = createHash("sha256")
        .update(`pullthrough\0${identity.project}\0${identity.stack}\0${username}`)
        .digest();
    const chars = [...seed.subarray(0, 22)].map((byte) => bcryptAlphabet[byte % 64]).join("");
    return `$2b$${String(bcryptCost).padStart(2, "0")}$${chars}`;
}

/** The front's htpasswd file: one `user:bcrypt-hash` line per pull credential. */
export function htpasswdFile(credentials: readonly Credential[], identity: StackIdentity): string {
    return credentials
        .map(
            ({ username, password }) =>
                `${username}:${bcrypt.hashSync(password, saltFor(identity, username))}\n`,
        )
        .join("");
}
