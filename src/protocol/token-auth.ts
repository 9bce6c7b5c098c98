/**
 * How a token becomes an `Authorization` value, shared by the server (its own token for mirror
 * fetches) and the restore client (`--token`), so both speak to forges the same way.
 *
 * HTTP Basic with the token as the password is the one form every forge's git endpoint accepts
 * (GitHub, GitLab, Gitea/Codeberg, Bitbucket; Bearer is not accepted by all). The user is
 * `x-access-token` — GitHub's name for token logins; the others ignore the user for a token — unless
 * the secret is written `USER:TOKEN`, e.g. `x-token-auth:…` for Bitbucket access tokens.
 */
export function tokenAuthorization(token: string): string {
  const login = token.includes(':') ? token : `x-access-token:${token}`;
  return `Basic ${Buffer.from(login, 'utf8').toString('base64')}`;
}
