// Drives the official Citrex client (npm citrex-sdk, installed by tests/test_citrex_sdk_crosscheck.py into a
// temporary folder) through every request FlashMM makes, against a local double: nothing leaves 127.0.0.1.
// Input (argv[2]): a JSON file {key, capture, verifying_contract, sub_account_id, calls: [...]}; output (argv[3]):
// a JSON file with the client's domain, address and each call's error (the client logs to stdout itself). The client's own fetch is kept; only its base URL is
// rewritten to the double (its mainnet constructor also posts a referral: that goes to the double too).
import { readFileSync, writeFileSync } from 'node:fs'

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'))
process.env.ORDER_DISPATCH_MAINNET_ADDRESS = spec.verifying_contract
const realFetch = globalThis.fetch
globalThis.fetch = (url, init) => realFetch(String(url).replace('https://api.citrex.markets/v1', spec.capture), init)

const { default: CitrexSDK } = await import('citrex-sdk')
const client = new CitrexSDK(spec.key, { environment: 'mainnet', subAccountId: spec.sub_account_id })
const out = { domain: { ...client.domain, chainId: Number(client.domain.chainId) }, address: client.account.address,
              results: [] }
const ids = {}
const big = (v) => (v === undefined ? undefined : BigInt(v))

for (const c of spec.calls) {
  let r
  switch (c.op) {
    case 'placeOrder':
      r = await client.placeOrder({ ...c.args, priceIncrement: big(c.args.priceIncrement) })
      if (r.order && r.order.id) ids[c.name] = r.order.id
      break
    case 'cancelOrder':
      r = await client.cancelOrder(ids[c.ref], c.productId)
      break
    case 'cancelOpenOrdersForProduct':
      r = await client.cancelOpenOrdersForProduct(c.productId)
      break
    case 'cancelAndReplaceOrder':
      r = await client.cancelAndReplaceOrder(ids[c.ref], c.args)
      if (r.order && r.order.id) ids[c.name] = r.order.id
      break
    case 'listOpenOrders': r = await client.listOpenOrders(c.symbol); break
    case 'listPositions': r = await client.listPositions(c.symbol); break
    case 'listBalances': r = await client.listBalances(); break
    case 'getAccountHealth': r = await client.getAccountHealth(); break
    case 'getOrderBook': r = await client.getOrderBook(c.symbol, c.limit, c.granularity); break
    case 'getTradeHistory': r = await client.getTradeHistory(c.symbol, c.lookback); break
    case 'getProducts': r = await client.getProducts(); break
    case 'getServerTime': r = await client.getServerTime(); break
    default: throw new Error(`unknown op ${c.op}`)
  }
  out.results.push({ name: c.name, op: c.op, error: r && r.error ? r.error : null })
}
writeFileSync(process.argv[3], JSON.stringify(out, (k, v) => (typeof v === 'bigint' ? v.toString() : v)))
process.exit(0)
