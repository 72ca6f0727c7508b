/**
 * Who is calling the cache: the namespace is the caller's verified identity
 * (services/common/callers.ts), and a caller that says which namespace it expects to act
 * on (`x-halyard-namespace`) must be that one.
 */
import { status } from '@grpc/grpc-js';
import { type CallerCall, CallerError, Callers } from '../common/callers.js';
import { CacheError, checkNamespace } from './rules.js';

export { tokenDigest } from '../common/callers.js';

/** Metadata a caller may send to say which namespace it expects to act on. */
export const NAMESPACE_HEADER = 'x-halyard-namespace';

export class Identities {
  private readonly callers: Callers;

  constructor(tokens: ReadonlyArray<{ sha256: string; namespace: string }>) {
    this.callers = new Callers(tokens.map((t) => ({ sha256: t.sha256, identity: t.namespace })));
  }

  /** The caller's namespace, or a CacheError (UNAUTHENTICATED, INVALID_ARGUMENT, PERMISSION_DENIED). */
  namespaceOf(call: CallerCall): string {
    const { identity: namespace, origin } = this.identify(call);
    checkNamespace(namespace, origin);
    const claimed = call.metadata.get(NAMESPACE_HEADER)[0];
    if (claimed !== undefined) {
      const name = String(claimed);
      checkNamespace(name, NAMESPACE_HEADER);
      if (name !== namespace) {
        throw new CacheError(
          status.PERMISSION_DENIED,
          `caller's namespace is ${namespace} (${origin}); it may not act on namespace ${name}`,
          'permission_denied',
        );
      }
    }
    return namespace;
  }

  private identify(call: CallerCall) {
    try {
      return this.callers.identify(call);
    } catch (err) {
      if (err instanceof CallerError) throw new CacheError(err.code, err.message, err.reason);
      throw err;
    }
  }
}
