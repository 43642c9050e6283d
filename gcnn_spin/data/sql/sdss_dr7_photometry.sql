-- SDSS DR7 neighbour counts and r-band Petrosian photometry of GZ1 galaxies, in exactly the columns that
-- data_prep/build_dataset.py --sdss-photometry reads.
--
-- CasJobs (https://skyserver.sdss.org/CasJobs), context DR7:
--   1. Import gz1_objects.csv (objID, ra, dec; written by data_prep/sdss_casjobs.py) as MyDB.gz1_objects.
--   2. Submit this query; when it has finished, download MyDB.gz1_sdss_dr7 as CSV and pass that file to
--      build_dataset.py --sdss-photometry.
--
-- n_neighbours_1arcsec counts every *other* detection within 1 arcsec (1.0E0/60 arcmin, float division).
-- dbo.fGetNearbyObjAllEq searches PhotoObjAll: primary, secondary and family detections. That is the reading
-- under which the study's 1" cut can remove two thirds of the matched galaxies (Table 1: 647,837 -> 213,744);
-- primary objects alone are too sparse at 1" for that. dbo.fGetNearbyObjEq searches PhotoPrimary only
-- (build_dataset.py: --set data.sdss_neighbours=primary).
-- Photometry is NULL when the GZ1 objID is not a primary object; such galaxies fail the quality cuts.
SELECT
  t.objID,
  p.petroR50_r,
  p.petroR50Err_r,
  p.petroMag_r,
  p.petroMagErr_r,
  (SELECT COUNT(*) FROM dbo.fGetNearbyObjAllEq(t.ra, t.[dec], 1.0E0/60) AS n WHERE n.objID <> t.objID)
    AS n_neighbours_1arcsec
INTO MyDB.gz1_sdss_dr7
FROM MyDB.gz1_objects AS t
LEFT OUTER JOIN PhotoPrimary AS p ON p.objID = t.objID
