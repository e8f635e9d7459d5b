"""Sign-in: one place for every way `provision` gets a credential.

`chooser` picks the credential for a run (`--auth`, the environment, the emulator);
`msal_flows` holds the MSAL flows (secret, certificate, client assertion, device code),
`azure_identity` the Azure Identity ones (the optional extra), `credential_files` reads
certificates and assertions from files, `ci` the CI platforms' pieces (GitHub Actions' OIDC
token, Azure Pipelines' service connection), `claims` what an access token says. Graph
(`graph/`) and the Azure Blob state (`states/azblob/`) both sign in through here.
"""
