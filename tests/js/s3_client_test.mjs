// Drives a BleepStore endpoint with the AWS SDK for JavaScript v3 and prints one JSON
// line of results. Usage: node s3_client_test.mjs <endpoint> <bucket>
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, ListObjectsV2Command,
  DeleteObjectCommand, DeleteObjectsCommand, HeadObjectCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const [endpoint, bucket] = process.argv.slice(2);
const client = new S3Client({
  endpoint, region: "us-east-1", forcePathStyle: true,
  credentials: { accessKeyId: "bleepstore", secretAccessKey: "bleepstore-secret" },
});
const md5 = (buf) => createHash("md5").update(buf).digest("hex");
const bodyBytes = async (body) => Buffer.from(await body.transformToByteArray());
const out = {};

await client.send(new CreateBucketCommand({ Bucket: bucket }));
const small = Buffer.from("hello from the js sdk");
const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: "js/small.txt", Body: small, ContentType: "text/plain" }));
out.put_etag_ok = put.ETag === `"${md5(small)}"`;

// A stream body of unknown length: the SDK sends aws-chunked with a trailing CRC32.
const streamed = randomBytes(300 * 1024);
await client.send(new PutObjectCommand({ Bucket: bucket, Key: "js/streamed.bin", Body: Readable.from([streamed]), ContentLength: streamed.length }));
const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "js/streamed.bin" }));
out.stream_roundtrip_ok = (await bodyBytes(got.Body)).equals(streamed);

const big = randomBytes(12 * 1024 * 1024 + 123);
const upload = new Upload({ client, params: { Bucket: bucket, Key: "js/multipart.bin", Body: big }, partSize: 5 * 1024 * 1024, queueSize: 2 });
const done = await upload.done();
out.multipart_etag = done.ETag;
const bigGot = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "js/multipart.bin" }));
out.multipart_roundtrip_ok = (await bodyBytes(bigGot.Body)).equals(big);

const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "js/small.txt" }));
out.head_length_ok = head.ContentLength === small.length;
const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "js/" }));
out.listed = (listed.Contents || []).map((o) => o.Key);

const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: "js/small.txt" }), { expiresIn: 60 });
const presigned = await fetch(url);
out.presigned_ok = presigned.status === 200 && Buffer.from(await presigned.arrayBuffer()).equals(small);

await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: "js/small.txt" }));
const del = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: "js/streamed.bin" }, { Key: "js/multipart.bin" }] } }));
out.deleted = (del.Deleted || []).map((d) => d.Key).sort();
const after = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
out.remaining = after.KeyCount;
console.log(JSON.stringify(out));
