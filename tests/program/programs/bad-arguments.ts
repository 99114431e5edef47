/** A program that gives the component an address this host does not have. */
import { Caches } from "pullthrough";

export const caches = new Caches("caches", { bindAddress: "10.99.99.99" });
