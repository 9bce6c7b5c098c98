/**
 * The configured upstream hosts. Only hosts listed here are ever contacted; `/git/{name}/...` maps to
 * `{baseUrl}/...`. Credentials for the mirror's own fetches are read at use (so a rotated token file is
 * picked up without a restart) and never logged.
 */
import { readFileSync } from 'node:fs';
import { tokenAuthorization } from '../protocol/token-auth.js';

/** One upstream as the composition root hands it over (mirrors the config's shape; git/ never imports config/). */
export interface UpstreamOptions {
  /** The `{host}` segment clients use: `github.com`, `127.0.0.1:9000`. */
  name: string;
  /** Base URL, e.g. `https://github.com`; a trailing slash is ignored. */
  baseUrl: string;
  /** Environment variable holding the server's token for the mirror's own fetches. */
  tokenEnv?: string;
  /** File holding that token (first line, trimmed; `USER:TOKEN` names the user too). */
  tokenFile?: string;
}

/** A configured upstream host. */
export class Upstream {
  readonly name: string;
  readonly baseUrl: string;
  readonly #tokenEnv: string | undefined;
  readonly #tokenFile: string | undefined;

  constructor(options: UpstreamOptions) {
    this.name = options.name;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#tokenEnv = options.tokenEnv;
    this.#tokenFile = options.tokenFile;
  }

  /** The upstream URL of `repo` (spelled as given: with or without `.git`). */
  repoUrl(repo: string): string {
    return `${this.baseUrl}/${repo.replace(/^\/+/, '')}`;
  }

  /**
   * The server's own credentials as an Authorization value (see protocol/token-auth.ts for the form),
   * else undefined. Read at each call, so a rotated file is picked up at the next fetch; a missing
   * file or empty variable means "none".
   */
  authorizationHeader(): string | undefined {
    let token: string | undefined;
    if (this.#tokenEnv) token = process.env[this.#tokenEnv]?.trim();
    if (!token && this.#tokenFile) {
      try {
        token = readFileSync(this.#tokenFile, 'utf8').split('\n')[0]?.trim();
      } catch {
        token = undefined;
      }
    }
    return token ? tokenAuthorization(token) : undefined;
  }

  /**
   * Environment for a git process that talks to this upstream: the Authorization header as
   * `http.extraHeader` through GIT_CONFIG_COUNT (not on the command line, where `ps` would show it).
   */
  gitEnv(): Record<string, string> {
    const auth = this.authorizationHeader();
    if (!auth) return {};
    return {
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.extraHeader',
      GIT_CONFIG_VALUE_0: `Authorization: ${auth}`,
    };
  }

  /** Stable description for logs: never includes credentials. */
  toJSON(): { name: string; baseUrl: string } {
    return { name: this.name, baseUrl: this.baseUrl };
  }
}

/** Looks up configured upstreams by their `{host}` name. */
export class UpstreamRegistry {
  readonly #byName = new Map<string, Upstream>();

  constructor(list: readonly UpstreamOptions[]) {
    for (const options of list) this.#byName.set(options.name, new Upstream(options));
  }

  get(name: string): Upstream | undefined {
    return this.#byName.get(name);
  }

  list(): Upstream[] {
    return [...this.#byName.values()];
  }
}
