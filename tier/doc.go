// Package tier is loaderd's shared cache tier: the shards of augmented
// epochs, and the rows of shards no single node completes, kept in an
// S3-compatible object store (s3://BUCKET/PREFIX) or a directory every node
// mounts (file:///PATH), where every node and every later job reads them
// instead of computing them again.
//
// # Layout
//
// Under the prefix, an epoch has the name of its directory in the local
// cache (shardcache.Key.Name, "e-" and 32 hex digits) and holds
//
//	meta.json                        the epoch's key (dataset, pipeline, seed, epoch)
//	shard-NNNNNN.<crc>.arrow         a complete shard: byte for byte the local
//	                                 cache's file, <crc> its CRC-32C
//	shard-NNNNNN.<crc>.idx           its row index
//	part-NNNNNN.<digest>.rows        rows of shard NNNNNN one node computed,
//	                                 their images one after another
//	part-NNNNNN.<digest>.idx         their row index
//
// A data object (.arrow, .rows) is written first and its index (.idx)
// after it; readers look only at indexes, so a shard or a part exists for
// them once both are whole. An object store makes each object visible only
// once its upload is complete (a multipart upload only once completed); a
// directory gets a temporary file, synced and renamed. A data object
// without its index, left by a process killed between the two, is never
// read.
//
// An index (format in index.go) lists, for each row it holds, the row's
// offset in the data object, the CRC-32C of its image bytes, its sample
// index and label; it ends with the CRC-32C of everything before. Rows
// read by byte range are checked against their CRC-32C, a whole shard
// against the CRC-32C in its name, before anything is handed out: a
// mismatch is ErrCorrupt, never data.
//
// # Eviction
//
// loaderd never deletes from the tier: another node or job may be reading
// what it would delete. The store's own lifecycle policy (an S3 expiration
// rule on the prefix) or, for a directory, a periodic `find -mtime`
// sweep, bounds it; see the README.
//
// # Credentials
//
// s3:// takes the endpoint and credentials from the standard AWS
// environment: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (default: AWS
// itself), AWS_REGION or AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else the shared
// credentials file (AWS_PROFILE) or the instance's IAM role (EC2, ECS, EKS
// service accounts). Credentials are never logged, put in an error or
// exported as a metric.
package tier
