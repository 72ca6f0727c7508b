/**
 * `halyard up` publishes its mesh file (deploy/local/mesh.yaml) as the mesh configuration
 * on the bus: as version 1 on an empty bus, as the next version when the file differs
 * from the latest one (a change applied live since is replaced by the file), and not at
 * all when they are the same. The launcher then runs it in `bus` mode.
 */
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import * as path from 'node:path';
import type { Bus } from '../../../bus/index.js';
import { parseMeshConfig, withoutHostSettings } from '../../launcher/mesh-config.js';
import { CliLogIds as Ids, type Logger } from '../log.js';

export interface PublishedMesh {
  readonly version: number;
  /** False when the latest version already was the file's content. */
  readonly published: boolean;
}

export async function publishMeshFile(bus: Bus, file: string, log: Logger): Promise<PublishedMesh> {
  const content = withoutHostSettings(await readFile(file, 'utf8'));
  // Refused here, with every problem and its line, rather than by the launcher.
  parseMeshConfig(content, path.basename(file));
  const store = bus.meshConfig();
  const latest = await store.latest();
  if (latest?.content === content) return { version: latest.version, published: false };
  const { version } = await store.publish({
    basedOn: latest?.version ?? 0,
    content,
    author: `halyard up (${userInfo().username})`,
    summary: latest
      ? `${path.basename(file)} differs from version ${latest.version}: published again`
      : `${path.basename(file)}: the first version`,
  });
  log.info(
    { msgId: Ids.meshConfigPublished, version, file },
    `published ${file} as mesh configuration version ${version}`,
  );
  return { version, published: true };
}
