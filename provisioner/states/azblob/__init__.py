"""The state in Azure Blob Storage (``azblob://``): the store (`store`), its connection and
sign-in (`conn`), the lease that is its lock (`lease`, `lock`), its journal (an append blob,
`journal`) and how the SDK's errors become ours (`errors`). Only `store` and what it imports
need the Azure SDK, so importing this package alone costs nothing.
"""
